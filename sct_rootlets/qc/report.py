"""Rootlets QC entries from files: the Python API behind -qc and `sct_rootlets_qc`."""

from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from sct_rootlets.io.image import check_same_grid, load_input_image, load_label_image
from sct_rootlets.anatomy.level_names import spinal_level_name
from sct_rootlets.qc.entries import EntryImages, add_entry
from sct_rootlets.qc.pictures import axial_mosaic, sagittal_overview, save_png
from sct_rootlets.quality.record import Quality


def _renderer(pictures):
    def render(images: EntryImages) -> None:
        background, overlay = pictures()
        save_png(background, images.background)
        save_png(overlay, images.overlay)
    return render


def rootlets_qc(qc_dir, image_path, rootlets_path, *, cord_path=None, cord_mask=None, levels_csv=None,
                command: str, cmdline: str, dataset: Optional[str] = None, subject: Optional[str] = None,
                note: Optional[str] = None, quality: Optional[Quality] = None) -> list:
    """Add an axial-mosaic entry and a sagittal-overview entry for one image; return the entries' JSON paths.

    The cord (a file, or an array on the image grid such as a computed mask) centres the tiles.
    `levels_csv` (a spinal-levels table, see sct_rootlets_levels) adds level bars to the sagittal overview.
    `note` (e.g. why a computed cord was not used) is shown beside the entry in our viewer, and so are the score,
    worst level and flags of `quality` (the prediction's quality record), by which our viewer sorts.
    """
    image = load_input_image(image_path)
    rootlets = load_label_image(rootlets_path, "rootlets map")
    cord = load_label_image(cord_path, "cord mask") if cord_path else None
    check_same_grid(image, rootlets, *([cord] if cord else []))
    levels = pd.read_csv(levels_csv) if levels_csv else None
    cord_data = cord.data if cord else cord_mask
    arrays = (image.data, rootlets.data, image.nifti.affine, image.zooms)
    present = sorted(int(v) for v in np.unique(rootlets.data[rootlets.data > 0]))
    common = {"input_path": Path(image_path), "command": command, "cmdline": cmdline, "dataset": dataset,
              "subject": subject, "extras": {"levels": [spinal_level_name(v) for v in present],
                                             **({"note": note} if note else {}), **_quality_extras(quality)}}
    return _axial_and_sagittal(qc_dir, arrays, cord_data, levels, common)


def _quality_extras(quality: Optional[Quality]) -> dict:
    """What our viewer shows of a quality record: the score, the worst level, the flags' names ({} without one)."""
    if quality is None:
        return {}
    return {"score": quality.score, "worst_level": quality.worst_level, "flags": quality.flag_names}


def _axial_and_sagittal(qc_dir, arrays: tuple, cord_data, levels, common: dict) -> list:
    return [
        add_entry(qc_dir, plane="Axial", render=_renderer(lambda: axial_mosaic(*arrays, cord=cord_data)), **common),
        add_entry(qc_dir, plane="Sagittal",
                  render=_renderer(lambda: sagittal_overview(*arrays, cord=cord_data, levels=levels)), **common),
    ]


def cord_qc(qc_dir, image_path, cord_path, *, command: str, cmdline: str, dataset: Optional[str] = None,
            subject: Optional[str] = None) -> list:
    """An axial mosaic of every cord slice and a sagittal overview of a cord mask; return the entries' paths."""
    image = load_input_image(image_path)
    cord = load_label_image(cord_path, "cord mask")
    check_same_grid(image, cord)
    common = {"input_path": Path(image_path), "command": command, "cmdline": cmdline, "dataset": dataset,
              "subject": subject, "extras": {}}
    arrays = (image.data, cord.data, image.nifti.affine, image.zooms)
    return _axial_and_sagittal(qc_dir, arrays, cord.data, None, common)
