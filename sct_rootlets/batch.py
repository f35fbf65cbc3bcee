"""Whole BIDS datasets: segment every image of one contrast with the model kept loaded, isolate failures, resume,
summarise.

Work runs in one of three ways, with identical results:
- in this process (jobs=1), reading the next image in a background thread while the network runs;
- a local pool of processes (jobs=N), each keeping its own loaded model and N-th of the CPUs;
- a Dask distributed cluster (`scheduler` address; e.g. SLURM through dask-jobqueue), each worker process
  keeping its own loaded model.
Outputs are BIDS derivatives under `<output>/derivatives/labels/`, QC under `<output>/qc`, logs of failures
under `<output>/log`, `<output>/results/rootlets_summary.csv` (per image and level) and
`<output>/results/rootlets_quality.csv` (per image, worst quality score first: which to check first).
"""

import concurrent.futures
import json
import logging
import multiprocessing
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import nibabel as nib
import numpy as np
import pandas as pd
from tqdm import tqdm

from sct_rootlets import __version__
from sct_rootlets.io.bids import BidsImage, warn_unlisted_contrasts
from sct_rootlets.io.image import check_same_grid, load_input_image, load_label_image
from sct_rootlets.anatomy.cord import cord_note, cord_status, cord_was_used
from sct_rootlets.anatomy.level_names import spinal_level_name
from sct_rootlets.options import DEFAULT_REGION, DEFAULT_ROI_MARGIN_MM
from sct_rootlets.anatomy.postprocess import PostProcessing
from sct_rootlets.io.outputs import sidecar_content, write_label_map
from sct_rootlets.anatomy.spinal_levels import output_paths, write_spinal_levels
from sct_rootlets.quality.record import read_quality
from sct_rootlets.segment import predict_labels

logger = logging.getLogger(__name__)

#: Sidecar options that change the result: a resumed run recomputes an image when any of them differs.
RESULT_OPTIONS = ("tta", "step_size", "folds", "checkpoints", "orientation", "engine", "region", "roi_margin_mm",
                  "postprocessing", "levels_method", "cord_mask")
DERIVATIVE_DESCRIPTION = "dataset_description.json"
SUMMARY_FILE = "rootlets_summary.csv"
QUALITY_FILE = "rootlets_quality.csv"


@dataclass(frozen=True)
class BatchSettings:
    """Everything a worker needs, picklable so it can travel to other processes and machines."""
    output: Path
    model: Optional[str] = None
    folds: Optional[tuple] = None
    device: str = "auto"
    tta: bool = False
    step_size: float = 0.5
    threads: Optional[int] = None
    engine: str = "auto"
    region: str = DEFAULT_REGION
    roi_margin_mm: float = DEFAULT_ROI_MARGIN_MM
    cord_model: Optional[str] = None  # for images without a manual cord mask (None: the bundled one)
    postprocessing: PostProcessing = field(default_factory=PostProcessing)
    levels_method: str = "extent"
    qc: bool = True
    dataset_name: str = ""
    command_line: str = "sct_rootlets_batch"


@dataclass(frozen=True)
class ItemResult:
    key: str
    image: str
    status: str                  # "done", "skipped" (up to date) or "failed"
    error: str = ""


def derivative_paths(image: BidsImage, output: Path) -> dict:
    """The label map, its sidecar and the levels outputs of one image (from its manual cord mask, else a
    computed one)."""
    folder = Path(output) / "derivatives" / "labels" / image.relative_folder
    dseg = folder / f"{image.stem}_label-rootlets_dseg.nii.gz"
    paths = {"dseg": dseg, "sidecar": folder / f"{image.stem}_label-rootlets_dseg.json"}
    paths.update({f"levels_{kind}": path for kind, path in output_paths(dseg, None, "discs" in image.labels).items()})
    return paths


def cord_signature(image: BidsImage, cord_model_sha256: str) -> dict:
    """The sidecar's `cord_mask` entry an up-to-date result of this image has (the manual mask, else the
    computed one, identified by the cord model's files, whether or not it found a cord)."""
    if "cord" in image.labels:
        return {"Computed": False, "File": str(image.labels["cord"])}
    return {"Computed": True, "FilesSHA256": cord_model_sha256}


def _normalised(value):
    return json.loads(json.dumps(value))


def result_signature(options: dict) -> dict:
    signature = {key: options.get(key) for key in RESULT_OPTIONS}
    if isinstance(signature["cord_mask"], dict):  # a computed mask is identified by the model's files alone
        signature["cord_mask"] = {key: signature["cord_mask"].get(key) for key in ("Computed", "File", "FilesSHA256")
                                  if key in signature["cord_mask"]}
    return _normalised(signature)


def is_up_to_date(image: BidsImage, settings: BatchSettings, files_sha256: str, signature: dict) -> bool:
    """True when the label map, its sidecar and (when a cord was found or given) the levels outputs exist, and the
    sidecar names the same model files and result options (the cord model's files included)."""
    paths = derivative_paths(image, settings.output)
    if not (paths["dseg"].is_file() and paths["sidecar"].is_file()):
        return False
    try:
        sidecar = json.loads(paths["sidecar"].read_text(encoding="utf-8"))
        levels_written = all(path.is_file() for key, path in paths.items() if key.startswith("levels_"))
        cord_used = cord_was_used(sidecar["Options"]["cord_mask"])
        expected = signature if cord_used else {**signature, "region": "whole", "roi_margin_mm": None}
        return (sidecar["Model"]["FilesSHA256"] == files_sha256
                and result_signature(sidecar["Options"]) == expected  # no cord found: the whole image was run
                and (levels_written or not cord_used))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # unreadable or older sidecars
        return False


# --- worker side -------------------------------------------------------------------------------------------

_SESSIONS = {}


def _session(settings: BatchSettings):
    """This process's loaded model for these settings (loaded on first use, then kept)."""
    from sct_rootlets.inference.session import InferenceSession
    from sct_rootlets.store.resolve import resolve_model

    key = (settings.model, settings.folds, settings.device, settings.tta, settings.step_size, settings.threads,
           settings.engine, settings.region, settings.roi_margin_mm)
    if key not in _SESSIONS:
        resolved = resolve_model(settings.model, settings.folds)
        _SESSIONS[key] = InferenceSession(resolved, device=settings.device, tta=settings.tta,
                                          step_size=settings.step_size, threads=settings.threads,
                                          engine=settings.engine, region=settings.region,
                                          roi_margin_mm=settings.roi_margin_mm)
    return _SESSIONS[key]


def _cord_masks(settings: BatchSettings):
    """This process's cord model for the images without a manual cord mask (loaded on first need, then kept)."""
    from sct_rootlets.anatomy.cord import CordMasks

    key = ("cord", settings.cord_model, settings.device, settings.threads, settings.engine)
    if key not in _SESSIONS:
        _SESSIONS[key] = CordMasks(model=settings.cord_model, device=settings.device, threads=settings.threads,
                                   engine=settings.engine)
    return _SESSIONS[key]


def _log_failure(image: BidsImage, settings: BatchSettings, text: str) -> None:
    log_dir = Path(settings.output) / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / f"{image.stem}.log").write_text(text, encoding="utf-8")


def process_image(image: BidsImage, settings: BatchSettings, loaded=None) -> ItemResult:
    """Segment one image and write all its outputs, or none of them; never raises for a bad image."""
    paths = derivative_paths(image, settings.output)
    existed = {key: path.exists() for key, path in paths.items()}
    try:
        session = _session(settings)
        source = loaded if loaded is not None else load_input_image(image.path)
        anatomy = {kind: load_label_image(path, kind) for kind, path in image.labels.items()}
        check_same_grid(source, *anatomy.values())
        cord, cord_source = _cord_masks(settings).get(source, anatomy["cord"].data if "cord" in anatomy else None,
                                                      image.labels.get("cord"))
        labels, quality = predict_labels(session, source, settings.postprocessing, cord=cord,
                                         cord_provenance=cord_source,
                                         discs=anatomy["discs"].data if "discs" in anatomy else None)
        options = {**session.options_for(cord), "input": str(image.path), "cord_mask": cord_source,
                   "postprocessing": settings.postprocessing.as_dict(),
                   "levels_method": settings.levels_method}
        write_label_map(paths["dseg"], paths["sidecar"], labels, source.nifti,
                        sidecar_content(command_line=settings.command_line, model=session.model, options=options,
                                        quality=quality),
                        overwrite=True)
        levels_csv = None
        if cord is not None:  # no cord found: the rootlets stand, without levels
            levels_csv = write_spinal_levels(paths["dseg"], cord_mask=cord, pmj_path=image.labels.get("pmj"),
                                             discs_path=image.labels.get("discs"), method=settings.levels_method,
                                             overwrite=True)["spinal"]
        if settings.qc:
            from sct_rootlets.qc.report import rootlets_qc

            rootlets_qc(Path(settings.output) / "qc", image.path, paths["dseg"], cord_mask=cord,
                        levels_csv=levels_csv, command="sct_rootlets_batch", cmdline=settings.command_line,
                        dataset=settings.dataset_name or None, subject=image.key.replace("/", "_"),
                        note=cord_note(cord_source), quality=quality)
        return ItemResult(key=image.key, image=str(image.path), status="done")
    except Exception as exc:  # one bad subject must never stop the others
        for key, path in paths.items():
            if not existed[key]:
                path.unlink(missing_ok=True)
        _log_failure(image, settings, f"{image.path}\n\n{traceback.format_exc()}")
        return ItemResult(key=image.key, image=str(image.path), status="failed", error=str(exc) or repr(exc))


def _init_pool_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


# --- driver side -------------------------------------------------------------------------------------------

def _run_in_process(images: list, settings: BatchSettings, bar) -> list:
    """Sequential, with the next image read in a background thread while the current one is segmented."""
    results = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as reader:
        upcoming = reader.submit(_read_or_none, images[0]) if images else None
        for index, image in enumerate(images):
            loaded = upcoming.result()
            upcoming = reader.submit(_read_or_none, images[index + 1]) if index + 1 < len(images) else None
            results.append(process_image(image, settings, loaded))
            bar.update()
    return results


def _read_or_none(image: BidsImage):
    """A prefetched image, or None so that process_image reports the reading error itself."""
    try:
        return load_input_image(image.path)
    except Exception:
        return None


def _run_in_pool(images: list, settings: BatchSettings, jobs: int, bar) -> list:
    from sct_rootlets.inference.session import available_cpus

    threads = settings.threads or max(1, available_cpus() // jobs)
    settings = BatchSettings(**{**settings.__dict__, "threads": threads})
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                                                initializer=_init_pool_worker, initargs=(threads,)) as pool:
        futures = [pool.submit(process_image, image, settings) for image in images]
        for _ in concurrent.futures.as_completed(futures):
            bar.update()
        return [future.result() for future in futures]


def _run_on_dask(images: list, settings: BatchSettings, scheduler: str, bar) -> list:
    from dask.distributed import Client, as_completed

    with Client(scheduler) as client:
        futures = client.map(process_image, images, settings=settings, pure=False)
        for _ in as_completed(futures):
            bar.update()
        return client.gather(futures)


def write_dataset_description(settings: BatchSettings, source: Path) -> Path:
    """The BIDS `dataset_description.json` of the derivative (kept if it already exists)."""
    path = Path(settings.output) / "derivatives" / "labels" / DERIVATIVE_DESCRIPTION
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({
            "Name": "Spinal nerve rootlets (sct_rootlets)", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "sct_rootlets", "Version": __version__}],
            "SourceDatasets": [{"URL": Path(source).resolve().as_uri()}]}, indent=2) + "\n", encoding="utf-8")
    return path


def _cord_of(sidecar_path: Path) -> tuple:
    """(cord status, reason) from an image's sidecar (see anatomy.cord.cord_status)."""
    try:
        return cord_status(json.loads(sidecar_path.read_text(encoding="utf-8"))["Options"]["cord_mask"])
    except (OSError, ValueError, KeyError, TypeError):
        return "unknown", ""


def summary_table(images: list, settings: BatchSettings) -> pd.DataFrame:
    """One row per image and level: voxel count and volume, plus extents and PMJ distances when computed, which
    cord was used (`cord_mask`: given, computed, not found, not plausible; `cord_reason` why not), and the quality
    record's image score, level score and flag names (empty without a record)."""
    rows = []
    for image in images:
        paths = derivative_paths(image, settings.output)
        if not paths["dseg"].is_file():
            continue
        dseg = nib.load(paths["dseg"])
        labels = np.asanyarray(dseg.dataobj)
        voxel_mm3 = float(np.prod(dseg.header.get_zooms()[:3]))
        levels = (pd.read_csv(paths["levels_spinal"]).set_index("spinal_level")
                  if "levels_spinal" in paths and paths["levels_spinal"].is_file() else None)
        cord, reason = _cord_of(paths["sidecar"])
        quality = read_quality(paths["sidecar"])
        values, counts = np.unique(labels[labels > 0], return_counts=True)
        for level, count in zip(values.astype(int), counts):
            level_quality = quality.levels.get(spinal_level_name(level)) if quality else None
            row = {"subject": image.subject, "session": image.session or "", "image": image.path.name,
                   "spinal_level": level, "level_name": spinal_level_name(level), "voxels": int(count),
                   "volume_mm3": count * voxel_mm3, "cord_mask": cord, "cord_reason": reason,
                   "quality_score": quality.score if quality else None,
                   "level_score": level_quality.score if level_quality else None,
                   "quality_flags": ";".join(quality.flag_names) if quality else ""}
            if levels is not None and level in levels.index:
                row.update(levels.loc[level, ["slice_start", "slice_end", "distance_from_pmj_start",
                                              "distance_from_pmj_end", "height"]].to_dict())
            rows.append(row)
    columns = ["subject", "session", "image", "spinal_level", "level_name", "voxels", "volume_mm3", "slice_start",
               "slice_end", "distance_from_pmj_start", "distance_from_pmj_end", "height", "cord_mask", "cord_reason",
               "quality_score", "level_score", "quality_flags"]
    return pd.DataFrame(rows, columns=columns)


def quality_table(images: list, settings: BatchSettings) -> pd.DataFrame:
    """One row per image with a label map (with or without rootlets), worst quality score first, images without a
    quality record last with empty cells; equal scores in dataset order. Flag names are joined by ";", their
    messages by " | "."""
    rows = []
    for image in images:
        paths = derivative_paths(image, settings.output)
        if not paths["dseg"].is_file():
            continue
        quality = read_quality(paths["sidecar"])
        row = {"subject": image.subject, "session": image.session or "", "image": image.path.name,
               "quality_score": None, "confidence": None, "worst_level": "", "flags": "", "flag_messages": ""}
        if quality:
            row.update(quality_score=quality.score, confidence=quality.confidence,
                       worst_level=quality.worst_level or "", flags=";".join(quality.flag_names),
                       flag_messages=" | ".join(flag.message for flag in quality.flags))
        rows.append(row)
    table = pd.DataFrame(rows, columns=["subject", "session", "image", "quality_score", "confidence", "worst_level",
                                        "flags", "flag_messages"])
    return table.sort_values("quality_score", na_position="last", kind="stable").reset_index(drop=True)


def run_batch(images: list, settings: BatchSettings, *, jobs: int = 1, scheduler: Optional[str] = None,
              resume: bool = False, progress: bool = True, source: Path = Path(".")) -> list:
    """Process the images; return one ItemResult per image (failures included, never raised)."""
    from sct_rootlets.inference.engines import select_engine
    from sct_rootlets.inference.session import choose_device, prediction_options
    from sct_rootlets.store.resolve import resolve_model

    model = resolve_model(settings.model, settings.folds)  # a model problem stops the run before any work
    warn_unlisted_contrasts(images, model.name, model.contrasts)
    cord_model_sha256 = ""
    if any("cord" not in image.labels for image in images):
        from sct_rootlets.anatomy.cord import cord_model

        cord_model_sha256 = cord_model(settings.cord_model).files_sha256

    engine = select_engine(settings.engine, choose_device(settings.device), settings.region)

    def signature(image: BidsImage) -> dict:
        return result_signature({**prediction_options(model, tta=settings.tta, step_size=settings.step_size,
                                                      engine=engine, region=settings.region,
                                                      roi_margin_mm=settings.roi_margin_mm),
                                 "postprocessing": settings.postprocessing.as_dict(),
                                 "levels_method": settings.levels_method,
                                 "cord_mask": cord_signature(image, cord_model_sha256)})

    pending, results = [], []
    for image in images:
        if resume and is_up_to_date(image, settings, model.files_sha256, signature(image)):
            results.append(ItemResult(key=image.key, image=str(image.path), status="skipped"))
        else:
            pending.append(image)
    write_dataset_description(settings, source)
    with tqdm(total=len(pending), desc="segmenting", unit="image", disable=not progress) as bar:
        if scheduler:
            results += _run_on_dask(pending, settings, scheduler, bar)
        elif jobs > 1 and len(pending) > 1:
            results += _run_in_pool(pending, settings, jobs, bar)
        else:
            results += _run_in_process(pending, settings, bar)
    tables = Path(settings.output) / "results"
    tables.mkdir(parents=True, exist_ok=True)
    summary_table(images, settings).to_csv(tables / SUMMARY_FILE, index=False, float_format="%.3f")
    quality_table(images, settings).to_csv(tables / QUALITY_FILE, index=False, float_format="%.3f")
    order = {image.key + str(image.path): index for index, image in enumerate(images)}
    return sorted(results, key=lambda r: order[r.key + r.image])
