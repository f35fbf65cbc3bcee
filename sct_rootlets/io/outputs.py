"""Where a segmentation's outputs go and how they are written: output planning (collisions, overwrites, writable
folders) and label maps with their provenance sidecars. Shared by the rootlets and cord segmenters."""

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import nibabel as nib

from sct_rootlets import __version__
from sct_rootlets.errors import OutputError
from sct_rootlets.io.atomic import atomic_paths
from sct_rootlets.io.image import NIFTI_EXTENSIONS, label_image_like, nifti_stem

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


def sidecar_content(*, command_line: str, model, options: dict, quality=None) -> dict:
    """SCT's `GeneratedBy` block plus the exact model (hashes) and options that produced the output; `model` is a
    `sct_rootlets.store.resolve.ResolvedModel`; `quality` (a `sct_rootlets.quality.record.Quality`), if given,
    goes under "Quality"."""
    generated_by = {"Name": command_line, "Version": __version__}
    if model.url:
        generated_by["ModelURL"] = model.url
    described = {"Name": model.name, "Version": model.version, "ArchiveSHA256": model.archive_sha256,
                 "FilesSHA256": model.files_sha256, "Folder": str(model.folder.trainer_dir)}
    if getattr(model, "source", None):  # a folder we did not install, e.g. "SCT (<folder>)"
        described["Source"] = model.source
    content = {"GeneratedBy": [generated_by], "Model": described, "Options": options}
    if quality is not None:
        content["Quality"] = quality.as_dict()
    return content


def write_label_map(image_path: Path, sidecar_path: Path, labels, reference: nib.Nifti1Image, sidecar: dict,
                    overwrite: bool) -> None:
    """Write a label map on the reference grid and its JSON sidecar, both or neither."""
    with atomic_paths([image_path, sidecar_path], overwrite=overwrite) as (image_tmp, sidecar_tmp):
        nib.save(label_image_like(labels, reference), image_tmp)
        sidecar_tmp.write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
