"""Per-level evaluation of a rootlets prediction against ground truth, as the field reports it.

For each level (and for all rootlets as one binary mask, row "all"):
- 3D Dice;
- along axial slices of the union range (from the first to the last slice where truth or prediction has the
  level, every slice counted): SP (both), FN (truth only), FP (prediction only), TN (neither), detection
  F1 = 2SP / (2SP + FN + FP), and the mean Dice of the slices where either has the level;
- HD95 (mm): 95th percentile of the surface distances both ways (blank when one side is empty);
- midpoint error (mm along the slice axis): prediction minus truth midpoint, > 0 = prediction more rostral
  (blank when one side is empty).
A quantity is blank only when it is undefined; it is never NaN otherwise.
"""

from typing import Optional

import numpy as np
import pandas as pd
from scipy import ndimage

from sct_rootlets.anatomy.centerline import AxialFrame

COLUMNS = ["level", "dice", "slice_dice_mean", "f1", "sp", "fp", "fn", "tn", "hd95_mm", "midpoint_error_mm",
           "voxels_truth", "voxels_prediction"]


def dice(truth: np.ndarray, prediction: np.ndarray) -> float:
    """2|T∩P| / (|T| + |P|); 1.0 when both are empty (perfect agreement on absence)."""
    total = int(truth.sum()) + int(prediction.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(truth, prediction).sum()) / total


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, structure=np.ones((3, 3, 3), bool), border_value=0)


def hd95_mm(truth: np.ndarray, prediction: np.ndarray, zooms_mm) -> Optional[float]:
    """95th percentile of the distances from each surface voxel to the other mask's surface, both ways."""
    if not truth.any() or not prediction.any():
        return None
    t_surface, p_surface = _surface(truth), _surface(prediction)
    to_prediction = ndimage.distance_transform_edt(~p_surface, sampling=zooms_mm[:3])[t_surface]
    to_truth = ndimage.distance_transform_edt(~t_surface, sampling=zooms_mm[:3])[p_surface]
    return float(np.percentile(np.concatenate([to_prediction, to_truth]), 95))


def slice_counts(truth: np.ndarray, prediction: np.ndarray, frame: AxialFrame) -> dict:
    """SP/FN/FP/TN over every slice of the union range, and the mean Dice of slices holding either."""
    t_slices, p_slices = set(frame.slices_of(truth).tolist()), set(frame.slices_of(prediction).tolist())
    union = t_slices | p_slices
    if not union:
        return {"sp": 0, "fp": 0, "fn": 0, "tn": 0, "f1": None, "slice_dice_mean": None}
    span = range(min(union), max(union) + 1)
    sp = len(t_slices & p_slices)
    fn, fp = len(t_slices - p_slices), len(p_slices - t_slices)
    slice_dices = []
    for rpi in sorted(union):
        index = frame.slab(rpi, rpi)
        slice_dices.append(dice(truth[index], prediction[index]))
    return {"sp": sp, "fp": fp, "fn": fn, "tn": len(span) - len(union),
            "f1": 2 * sp / (2 * sp + fn + fp), "slice_dice_mean": float(np.mean(slice_dices))}


def midpoint_error_mm(truth: np.ndarray, prediction: np.ndarray, frame: AxialFrame) -> Optional[float]:
    """(prediction midpoint - truth midpoint) along the slice axis, in mm; midpoint = centre of the slice range."""
    t_slices, p_slices = frame.slices_of(truth), frame.slices_of(prediction)
    if t_slices.size == 0 or p_slices.size == 0:
        return None
    shift_slices = (p_slices.min() + p_slices.max()) / 2 - (t_slices.min() + t_slices.max()) / 2
    return float(shift_slices * frame.thickness_mm)


def _row(level, truth: np.ndarray, prediction: np.ndarray, zooms_mm, frame: AxialFrame) -> dict:
    return {"level": level, "dice": dice(truth, prediction), **slice_counts(truth, prediction, frame),
            "hd95_mm": hd95_mm(truth, prediction, zooms_mm),
            "midpoint_error_mm": midpoint_error_mm(truth, prediction, frame),
            "voxels_truth": int(truth.sum()), "voxels_prediction": int(prediction.sum())}


def evaluate(truth: np.ndarray, prediction: np.ndarray, affine: np.ndarray, zooms_mm) -> pd.DataFrame:
    """One row per level present in truth or prediction, then the binary row "all"."""
    if truth.shape != prediction.shape:
        raise ValueError(f"truth {truth.shape} and prediction {prediction.shape} differ in shape")
    frame = AxialFrame.of(affine, truth.shape)
    levels = sorted((set(np.unique(truth).tolist()) | set(np.unique(prediction).tolist())) - {0})
    rows = [_row(int(level), truth == level, prediction == level, zooms_mm, frame) for level in levels]
    rows.append(_row("all", truth > 0, prediction > 0, zooms_mm, frame))
    return pd.DataFrame(rows, columns=COLUMNS)
