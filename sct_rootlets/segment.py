"""Segment rootlets (and the cord) in one or more images: the Python API behind `sct_deepseg_rootlets` and
`sct_rootlets_cord`, files in, files out.

Everything a run can fail on before the network runs (inputs, outputs, model) is checked first, so a bad
argument costs no inference time and leaves nothing behind.
"""

import concurrent.futures
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from sct_rootlets.anatomy.postprocess import PostProcessing
from sct_rootlets.errors import InputImageError
from sct_rootlets.io.image import InputImage, check_same_grid, load_input_image, load_label_image
from sct_rootlets.io.outputs import plan_outputs, plan_outputs_exist, sidecar_content, write_label_map
from sct_rootlets.options import DEFAULT_REGION, DEFAULT_ROI_MARGIN_MM
from sct_rootlets.quality.score import assess
from sct_rootlets.store.resolve import resolve_model

logger = logging.getLogger(__name__)

#: What `sct_rootlets_cord` appends to the input's stem, as SCT names cord masks.
CORD_OUTPUT_SUFFIX = "_seg"


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


def predict_labels(session, image: InputImage, postprocessing: PostProcessing, *, cord: Optional[np.ndarray] = None,
                   cord_provenance: Optional[dict] = None, discs: Optional[np.ndarray] = None,
                   prepared=None) -> tuple:
    """(post-processed label map, its `Quality`) of one image with a loaded `InferenceSession`: what every
    command that writes rootlet labels records. `cord` is the mask the network was restricted to and the labels
    filtered by (None: none), `cord_provenance` the sidecar's `cord_mask` entry for it."""
    predicted, confidence = session.predict_scored(image, cord, prepared)
    labels = postprocessing.apply(predicted, image.zooms, image.nifti.affine, cord=cord, discs=discs)
    return labels, assess(labels, image.nifti.affine, confidence, cord, cord_provenance)


def segment_rootlets(inputs: Sequence, *, output=None, model: Optional[str] = None,
                     folds: Optional[Sequence[str]] = None, device: str = "auto", tta: bool = False,
                     step_size: float = 0.5, threads: Optional[int] = None, engine: str = "auto",
                     region: str = DEFAULT_REGION, roi_margin_mm: float = DEFAULT_ROI_MARGIN_MM,
                     cord_model: Optional[str] = None,
                     overwrite: bool = False, progress: bool = False, command_line: Optional[str] = None,
                     postprocessing: PostProcessing = PostProcessing(), anatomy: Anatomy = Anatomy(),
                     qc: QcOptions = QcOptions()) -> list:
    """Segment each input with one loaded model; return the written label-map paths.

    `model` is an installed model name or an nnU-Net model folder (None: the default model, installed on
    first use, or the bundled starter offline; see `resolve_model`).
    `postprocessing` cleans each label map; `anatomy` (one input only) adds spinal levels (written when any of
    its labels is given); `qc` adds report entries for each input. `engine` runs the network in PyTorch or
    OpenVINO; `region` ("whole", "exact" or "fast", see `InferenceSession`) how it covers the image around the
    cord, within `roi_margin_mm`. Wherever a cord mask is needed and `anatomy.cord` is not given, the cord model
    computes one (`cord_model`: None or "bundled" for the bundled one, a name such as "sct-contrast-agnostic", or
    a folder; see `sct_rootlets.anatomy.cord.cord_model`), and the sidecar says so.
    Raises a RootletsError subclass, with a message for the user, for anything the user can fix.
    """
    from sct_rootlets.anatomy.cord import CordMasks, cord_note
    from sct_rootlets.inference.session import InferenceSession, choose_device

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
        from sct_rootlets.anatomy.spinal_levels import output_paths, write_spinal_levels  # pandas: only when needed

        level_outputs = output_paths(plans[0].image, None, anatomy.discs is not None).values()
        plan_outputs_exist(level_outputs, overwrite)
    choose_device(device)  # a device that cannot be used stops the run here
    cords = CordMasks(model=cord_model, device=device, threads=threads, engine=engine)
    cord_required = wants_levels or postprocessing.needs_cord
    cord_wanted = cord_required or region != "whole" or qc.folder is not None

    def cord_of(image):
        return cords.get(image, anatomy_labels.get("cord"), anatomy.cord,
                         required=cord_required) if cord_wanted else (None, None)

    resolved = resolve_model(model, folds, progress=progress)  # a model problem stops the run before any work
    # The first image's cord is computed while the rootlets model loads and preprocesses that image (the cord
    # step's numerical work releases the interpreter): start-up overlaps the cord step.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as worker:
        first_cord = worker.submit(cord_of, first)
        session = InferenceSession(resolved, device=device, tta=tta, step_size=step_size, threads=threads,
                                   progress=progress, engine=engine, region=region, roi_margin_mm=roi_margin_mm)
        try:
            prepared = session.prepare(first) if cord_wanted else None
        finally:  # the cord's error, if any, comes first, as for every later image
            first_cord = first_cord.result()
    logger.info("Loaded model %s (folds %s) from %s on %s", resolved.name, ", ".join(resolved.folder.checkpoints),
                resolved.folder.trainer_dir, session.device)
    command_line = command_line or f"sct_rootlets.segment_rootlets({[str(i) for i in inputs]})"
    written, levels = [], {}
    for plan in plans:
        logger.info("Segmenting %s", plan.input)
        image = first if plan is plans[0] else load_input_image(plan.input)
        cord, cord_source = first_cord if plan is plans[0] else cord_of(image)
        labels, quality = predict_labels(session, image, postprocessing, cord=cord, cord_provenance=cord_source,
                                         discs=anatomy_labels.get("discs"), prepared=prepared)
        first = first_cord = prepared = None
        options = {**session.options_for(cord), "input": str(plan.input), "cord_mask": cord_source,
                   "postprocessing": postprocessing.as_dict()}
        sidecar = sidecar_content(command_line=command_line, model=resolved, options=options, quality=quality)
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
                        subject=qc.subject, note=cord_note(cord_source), quality=quality)
    return written


def segment_cord(inputs: Sequence, *, output=None, model: Optional[str] = None, device: str = "auto",
                 threads: Optional[int] = None, engine: str = "auto", overwrite: bool = False,
                 command_line: Optional[str] = None, qc=None) -> list:
    """Write `<stem>_seg.nii.gz` (or `output`, one input) and its JSON sidecar for each input; return the masks
    written. Every input and output is checked before the model loads; an image without a cord stops the run
    with nothing written for it. `qc` (QcOptions) adds report entries."""
    from sct_rootlets.anatomy.cord import CordSegmenter

    inputs = [Path(i) for i in inputs]
    images = {inputs[0]: load_input_image(inputs[0])}
    for path in inputs[1:]:
        load_input_image(path)  # validate every input before any work
    plans = plan_outputs(inputs, Path(output) if output else None, overwrite=overwrite, suffix=CORD_OUTPUT_SUFFIX)
    segmenter = CordSegmenter(model=model, device=device, threads=threads, engine=engine)
    command_line = command_line or f"sct_rootlets.segment.segment_cord({[str(i) for i in inputs]})"
    written = []
    for plan in plans:
        image = images.pop(plan.input, None) or load_input_image(plan.input)
        mask, measures = segmenter.segment_checked(image)
        options = {**segmenter.options(), "input": str(plan.input), "Measures": measures.as_dict()}
        sidecar = sidecar_content(command_line=command_line, model=segmenter.model, options=options)
        write_label_map(plan.image, plan.sidecar, mask, image.nifti, sidecar, overwrite)
        logger.info("Wrote %s", plan.image)
        written.append(plan.image)
        if qc is not None and qc.folder is not None:
            from sct_rootlets.qc.report import cord_qc

            cord_qc(qc.folder, plan.input, plan.image, command="sct_rootlets_cord", cmdline=command_line,
                    dataset=qc.dataset, subject=qc.subject)
    return written
