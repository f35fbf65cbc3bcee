"""Segment rootlets in one or more images: the Python API behind `sct_deepseg_rootlets`.

Everything a run can fail on before the network runs (inputs, outputs, model) is checked first, so a bad
argument costs no inference time and leaves nothing behind.
"""

import concurrent.futures
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import nibabel as nib
import numpy as np

from sct_rootlets import __version__
from sct_rootlets.atomic import atomic_paths
from sct_rootlets.errors import InputImageError, OutputError
from sct_rootlets.image import (InputImage, check_same_grid, label_image_like, load_input_image, load_label_image,
                                nifti_stem, NIFTI_EXTENSIONS)
from sct_rootlets.models import ResolvedModel, resolve_model
from sct_rootlets.options import DEFAULT_REGION, DEFAULT_ROI_MARGIN_MM
from sct_rootlets.postprocess import PostProcessing

logger = logging.getLogger(__name__)

OUTPUT_SUFFIX = "_rootlets"


@dataclass(frozen=True)
class OutputPlan:
    """Where one input's label map and its JSON sidecar go."""
    input: Path
    image: Path
    sidecar: Path


def default_output_path(input_path: Path, suffix: str = OUTPUT_SUFFIX) -> Path:
    """`<folder>/<stem>_rootlets.nii.gz` beside the input (never `_seg`, which overwrote cord masks)."""
    return input_path.parent / f"{nifti_stem(input_path)}{suffix}.nii.gz"


def sidecar_path(image_path: Path) -> Path:
    return image_path.parent / f"{nifti_stem(image_path)}.json"


def _nearest_existing_folder(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _check_writable(folder: Path) -> None:
    existing = _nearest_existing_folder(folder)
    if not existing.is_dir():
        raise OutputError(f"Output folder {folder} cannot be created: {existing} is not a folder.")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError:
        raise OutputError(f"Output folder {folder} is not writable.") from None


def plan_outputs(inputs: Sequence[Path], output: Optional[Path] = None, *, overwrite: bool = False,
                 suffix: str = OUTPUT_SUFFIX) -> list:
    """Output paths for each input (default: `<stem><suffix>.nii.gz` beside it), refusing collisions, overwrites
    of inputs, and unwritable folders."""
    if output is not None and len(inputs) != 1:
        raise OutputError(f"An output name (-o) needs exactly one input; {len(inputs)} were given.")
    if output is not None and not str(output).endswith(NIFTI_EXTENSIONS):
        raise OutputError(f"Output {output} must end with .nii.gz or .nii.")
    targets = [Path(output) if output else default_output_path(Path(i), suffix) for i in inputs]
    plans = [OutputPlan(input=Path(i), image=target, sidecar=sidecar_path(target))
             for i, target in zip(inputs, targets)]
    input_paths = {Path(os.path.abspath(p)) for p in inputs}
    seen = set()
    for plan in plans:
        for target in (plan.image, plan.sidecar):
            absolute = Path(os.path.abspath(target))
            if absolute in input_paths or any(target.exists() and target.samefile(p) for p in inputs):
                raise OutputError(f"Output {target} would overwrite an input; choose another name with -o.")
            if absolute in seen:
                raise OutputError(f"Two inputs would write the same output {target}; segment them separately.")
            seen.add(absolute)
        plan_outputs_exist((plan.image, plan.sidecar), overwrite)
        _check_writable(plan.image.parent)
    return plans


def plan_outputs_exist(paths, overwrite: bool) -> None:
    """Refuse before any work when an output exists and may not be replaced."""
    for path in paths:
        if Path(path).exists() and not overwrite:
            raise OutputError(f"Output {path} already exists; use -overwrite to replace it.")


def sidecar_content(*, command_line: str, model: ResolvedModel, options: dict) -> dict:
    """SCT's `GeneratedBy` block plus the exact model (hashes) and options that produced the output."""
    generated_by = {"Name": command_line, "Version": __version__}
    if model.url:
        generated_by["ModelURL"] = model.url
    return {
        "GeneratedBy": [generated_by],
        "Model": {"Name": model.name, "Version": model.version, "ArchiveSHA256": model.archive_sha256,
                  "FilesSHA256": model.files_sha256, "Folder": str(model.folder.trainer_dir)},
        "Options": options,
    }


def write_label_map(image_path: Path, sidecar_path: Path, labels, reference: nib.Nifti1Image, sidecar: dict,
                    overwrite: bool) -> None:
    """Write a label map on the reference grid and its JSON sidecar, both or neither."""
    image_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_paths([image_path, sidecar_path], overwrite=overwrite) as (image_tmp, sidecar_tmp):
        nib.save(label_image_like(labels, reference), image_tmp)
        sidecar_tmp.write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class QcOptions:
    """Where to add QC entries (None: no QC) and the names to file them under."""
    folder: Optional[Path] = None
    dataset: Optional[str] = None
    subject: Optional[str] = None


@dataclass(frozen=True)
class Anatomy:
    """Optional labels on the input's grid for one input: cord mask, PMJ and disc labels (paths)."""
    cord: Optional[Path] = None
    pmj: Optional[Path] = None
    discs: Optional[Path] = None
    levels_method: str = "extent"


def _load_anatomy(anatomy: Anatomy, image: InputImage, postprocessing: PostProcessing) -> dict:
    """Validate the anatomy labels against the input grid and what the chosen steps need."""
    if postprocessing.needs_discs and anatomy.discs is None:
        raise InputImageError("Cutting rootlets below a disc (-remove-below-disc) needs disc labels (-discs).")
    loaded = {kind: load_label_image(path, what) for kind, path, what in
              (("cord", anatomy.cord, "cord mask"), ("pmj", anatomy.pmj, "PMJ label"),
               ("discs", anatomy.discs, "disc labels")) if path is not None}
    check_same_grid(image, *loaded.values())
    for kind, label in loaded.items():
        if not label.data.any():
            raise InputImageError(f"The {kind} label {label.path} is empty.")
    if postprocessing.needs_discs and not np.any(loaded["discs"].data == postprocessing.below_disc):
        raise InputImageError(f"Disc label {postprocessing.below_disc} is not in {anatomy.discs}.")
    return {kind: label.data for kind, label in loaded.items()}


def segment_rootlets(inputs: Sequence, *, output=None, model: Optional[str] = None,
                     folds: Optional[Sequence[str]] = None, device: str = "auto", tta: bool = False,
                     step_size: float = 0.5, threads: Optional[int] = None, engine: str = "auto",
                     region: str = DEFAULT_REGION, roi_margin_mm: float = DEFAULT_ROI_MARGIN_MM,
                     overwrite: bool = False, progress: bool = False, command_line: Optional[str] = None,
                     postprocessing: PostProcessing = PostProcessing(), anatomy: Anatomy = Anatomy(),
                     qc: QcOptions = QcOptions()) -> list:
    """Segment each input with one loaded model; return the written label-map paths.

    `model` is an installed model name or an nnU-Net model folder (None: the default model, installed on
    first use, or the bundled starter offline; see `resolve_model`).
    `postprocessing` cleans each label map; `anatomy` (one input only) adds spinal levels (written when any of
    its labels is given); `qc` adds report entries for each input. `engine` runs the network in PyTorch or
    OpenVINO; `region` ("whole", "exact" or "fast", see `InferenceSession`) how it covers the image around the
    cord, within `roi_margin_mm`. Wherever a cord mask is needed and `anatomy.cord` is not given, the bundled
    cord model computes one, and the sidecar says so.
    Raises a RootletsError subclass, with a message for the user, for anything the user can fix.
    """
    from sct_rootlets.cord.segment import CordMasks
    from sct_rootlets.inference import InferenceSession, select_device  # torch loads only when segmenting

    inputs = [Path(i) for i in inputs]
    if anatomy != Anatomy() and len(inputs) != 1:
        raise InputImageError(f"Cord, PMJ and disc labels (-s, -pmj, -discs) belong to one image; "
                              f"{len(inputs)} were given.")
    first = load_input_image(inputs[0])  # kept for its turn: one read per input in a single-image run
    for path in inputs[1:]:
        load_input_image(path)  # validate every input before any work; each is reloaded when its turn comes
    anatomy_labels = _load_anatomy(anatomy, first, postprocessing)
    plans = plan_outputs(inputs, Path(output) if output else None, overwrite=overwrite)
    wants_levels = any(path is not None for path in (anatomy.cord, anatomy.pmj, anatomy.discs))
    if wants_levels:
        from sct_rootlets.spinal_levels import output_paths, write_spinal_levels  # pandas: only when needed

        level_outputs = output_paths(plans[0].image, None, anatomy.discs is not None).values()
        plan_outputs_exist(level_outputs, overwrite)
    select_device(device)
    cords = CordMasks(device=device, threads=threads, engine=engine)
    cord_required = wants_levels or postprocessing.needs_cord
    cord_wanted = cord_required or region != "whole" or qc.folder is not None

    def cord_of(image):
        return cords.get(image, anatomy_labels.get("cord"), anatomy.cord,
                         required=cord_required) if cord_wanted else (None, None)

    resolved = resolve_model(model, folds, progress=progress)  # a model problem stops the run before any work
    # The first image's cord is computed while the rootlets model loads (the cord step's numerical work
    # releases the interpreter, the model's loading is mostly imports): a second of a single run's start-up.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as worker:
        first_cord = worker.submit(cord_of, first)
        session = InferenceSession(resolved, device=device, tta=tta, step_size=step_size, threads=threads,
                                   progress=progress, engine=engine, region=region, roi_margin_mm=roi_margin_mm)
        first_cord = first_cord.result()
    logger.info("Loaded model %s (folds %s) from %s on %s", resolved.name, ", ".join(resolved.folder.checkpoints),
                resolved.folder.trainer_dir, session.device)
    command_line = command_line or f"sct_rootlets.segment_rootlets({[str(i) for i in inputs]})"
    written, levels = [], {}
    for plan in plans:
        logger.info("Segmenting %s", plan.input)
        image = first if plan is plans[0] else load_input_image(plan.input)
        cord, cord_source = first_cord if plan is plans[0] else cord_of(image)
        first = first_cord = None
        labels = postprocessing.apply(session.predict(image, cord), image.zooms, image.nifti.affine,
                                      cord=cord, discs=anatomy_labels.get("discs"))
        options = {**session.options_for(cord), "input": str(plan.input), "cord_mask": cord_source,
                   "postprocessing": postprocessing.as_dict()}
        sidecar = sidecar_content(command_line=command_line, model=resolved, options=options)
        write_label_map(plan.image, plan.sidecar, labels, image.nifti, sidecar, overwrite)
        logger.info("Wrote %s", plan.image)
        written.append(plan.image)
        if wants_levels:
            levels = write_spinal_levels(plan.image, cord_mask=cord, pmj_path=anatomy.pmj, discs_path=anatomy.discs,
                                         method=anatomy.levels_method, overwrite=overwrite)
            logger.info("Wrote %s", ", ".join(str(p) for p in levels.values()))
        if qc.folder is not None:
            from sct_rootlets.qc.report import rootlets_qc

            rootlets_qc(qc.folder, plan.input, plan.image, cord_mask=cord, levels_csv=levels.get("spinal"),
                        command="sct_deepseg_rootlets", cmdline=command_line, dataset=qc.dataset,
                        subject=qc.subject)
    return written
