"""Spinal levels from files: the Python API behind `sct_rootlets_levels` (and `sct_deepseg_rootlets -s`).

Reads rootlets, cord mask and optional PMJ and disc labels (all on one grid), writes only its declared outputs
(next to the rootlets file unless an output folder is given), atomically:
- `<stem>_spinal_levels.nii.gz`: the cord labelled with spinal levels, on the rootlets' grid;
- `<stem>_spinal_levels.csv`: one row per level (published columns + midpoints);
- with discs: `<stem>_vertebral_levels.csv` (same columns) and `<stem>_spinal_vs_vertebral.csv`.
"""

from pathlib import Path
from typing import Optional

import nibabel as nib
import numpy as np

from sct_rootlets.io.atomic import atomic_paths
from sct_rootlets.errors import InputImageError, OutputError
from sct_rootlets.io.image import check_same_grid, label_image_like, load_label_image, nifti_stem
from sct_rootlets.anatomy.levels import compute_spinal_levels, SpinalLevels


def output_paths(rootlets_path: Path, ofolder: Optional[Path], with_discs: bool) -> dict:
    folder = Path(ofolder) if ofolder else Path(rootlets_path).parent
    stem = nifti_stem(rootlets_path)
    paths = {"map": folder / f"{stem}_spinal_levels.nii.gz", "spinal": folder / f"{stem}_spinal_levels.csv"}
    if with_discs:
        paths["vertebral"] = folder / f"{stem}_vertebral_levels.csv"
        paths["differences"] = folder / f"{stem}_spinal_vs_vertebral.csv"
    return paths


def levels_from_files(rootlets_path, cord_path=None, *, cord_mask=None, pmj_path=None, discs_path=None,
                      method: str = "extent", dilate_mm: float = 3.0) -> tuple:
    """Load and check the inputs, compute the levels; return (SpinalLevels, rootlets NIfTI).

    The cord is a file (`cord_path`) or an array on the rootlets' grid (`cord_mask`, e.g. a computed one)."""
    if (cord_path is None) == (cord_mask is None):
        raise ValueError("give exactly one of cord_path and cord_mask")
    rootlets = load_label_image(rootlets_path, "rootlets map")
    cord = load_label_image(cord_path, "cord mask") if cord_path else None
    pmj = load_label_image(pmj_path, "PMJ label") if pmj_path else None
    discs = load_label_image(discs_path, "disc labels") if discs_path else None
    check_same_grid(rootlets, *(image for image in (cord, pmj, discs) if image is not None))
    for image, what in ((cord, "cord mask"), (pmj, "PMJ label"), (discs, "disc labels")):
        if image is not None and not image.data.any():
            raise InputImageError(f"The {what} {image.path} is empty.")
    cord_mask = cord.data > 0 if cord is not None else np.asarray(cord_mask) > 0
    if cord_mask.shape != rootlets.data.shape:
        raise InputImageError(f"The cord mask's shape {cord_mask.shape} differs from the rootlets' "
                              f"{rootlets.data.shape}.")
    levels = compute_spinal_levels(rootlets.data.astype(int), cord_mask, rootlets.nifti.affine, rootlets.zooms,
                                   fname=Path(rootlets_path).name, pmj=None if pmj is None else pmj.data,
                                   discs=None if discs is None else discs.data.astype(int),
                                   method=method, dilate_mm=dilate_mm)
    return levels, rootlets.nifti


def write_spinal_levels(rootlets_path, cord_path=None, *, cord_mask=None, pmj_path=None, discs_path=None,
                        method: str = "extent", dilate_mm: float = 3.0, ofolder=None, overwrite: bool = False) -> dict:
    """Compute spinal levels and write the declared outputs; return {kind: path}. The cord is a file
    (`cord_path`) or an array (`cord_mask`), as in `levels_from_files`."""
    levels, reference = levels_from_files(rootlets_path, cord_path, cord_mask=cord_mask, pmj_path=pmj_path,
                                          discs_path=discs_path, method=method, dilate_mm=dilate_mm)
    paths = output_paths(Path(rootlets_path), ofolder, discs_path is not None)
    inputs = [Path(p).resolve() for p in (rootlets_path, cord_path, pmj_path, discs_path) if p]
    for path in paths.values():
        if path.resolve() in inputs:
            raise OutputError(f"Output {path} would overwrite an input; choose another -ofolder.")
    tables = _tables(levels)
    with atomic_paths(list(paths.values()), overwrite=overwrite) as temps:
        for kind, tmp in zip(paths, temps):
            if kind == "map":
                nib.save(label_image_like(levels.level_map, reference), tmp)
            else:
                tables[kind].to_csv(tmp, index=False, float_format="%.2f", na_rep="")
    return paths


def _tables(levels: SpinalLevels) -> dict:
    return {"spinal": levels.spinal, "vertebral": levels.vertebral, "differences": levels.differences}
