"""Anatomical flags: what a rootlets label map shows that a correct one would not, read from the labels alone
(and the cord mask where there is one), with no network.

Rootlets leave the cord on both sides at every level, one level below the other from C2 down; so a level missing
between present ones, two levels in the wrong order along the cord, a level on one side only, a level much smaller
or larger than its neighbours, and labels far outside the spinal canal all mean a correction is likely. The limits
were chosen by measurement on generated scans with graded degradations (bench/RESULTS.md, issue 29).
"""

from typing import Optional

import numpy as np
from scipy import ndimage

from sct_rootlets.anatomy.centerline import bounding_box
from sct_rootlets.anatomy.levels import spinal_level_name
from sct_rootlets.quality.record import Flag

#: A level with fewer voxels than this share of the mean of its present neighbours, or more than its inverse times
#: it, is flagged (levels at the field of view's superior or inferior edge may be cut, and are not compared).
SIZE_RATIO = 0.2
#: The smaller side of a level below this share of its larger side is flagged (voxels left vs right of the cord).
SIDE_RATIO = 0.15
#: Labels farther than this from the cord (mm) lie outside the spinal canal...
FAR_FROM_CORD_MM = 15.0
#: ...and are flagged when they are more than this share of the labelled voxels.
FAR_SHARE = 0.05
#: Levels with fewer voxels than this are too small to weigh sides or sizes.
MIN_VOXELS = 10


def _world_centroids(labels: np.ndarray, affine: np.ndarray, values) -> dict:
    centres = ndimage.center_of_mass(np.ones(labels.shape, np.uint8), labels, values)
    return {value: affine[:3, :3] @ np.asarray(centre) + affine[:3, 3] for value, centre in zip(values, centres)}


def _superior_axis(affine: np.ndarray) -> int:
    """The voxel axis closest to superior-inferior."""
    return int(np.argmax(np.abs(affine[2, :3]) / np.linalg.norm(affine[:3, :3], axis=0)))


def missing_levels(present: list) -> list:
    return [Flag("missing_level", f"{spinal_level_name(value)} is missing between {spinal_level_name(below)} and "
                                  f"{spinal_level_name(above)}.", spinal_level_name(value))
            for below, above in zip(present, present[1:]) for value in range(below + 1, above)]


def levels_out_of_order(present: list, centroids: dict) -> list:
    """Each level must lie below (inferior to) the one above it."""
    return [Flag("levels_out_of_order", f"{spinal_level_name(lower)} lies above {spinal_level_name(upper)} along the "
                                        f"cord.", spinal_level_name(lower))
            for upper, lower in zip(present, present[1:]) if centroids[lower][2] > centroids[upper][2]]


def _at_edge(labels: np.ndarray, value: int, axis: int) -> bool:
    reach = np.flatnonzero(np.any(labels == value, axis=tuple(a for a in range(3) if a != axis)))
    return reach[0] == 0 or reach[-1] == labels.shape[axis] - 1


def size_outliers(labels: np.ndarray, present: list, counts: dict, affine: np.ndarray) -> list:
    """Levels far smaller or larger than the mean of their present neighbours (edge levels not judged)."""
    axis = _superior_axis(affine)
    flags = []
    for index, value in enumerate(present):
        neighbours = [counts[v] for v in present[max(index - 1, 0):index + 2] if v != value]
        if not neighbours or _at_edge(labels, value, axis):
            continue
        ratio = counts[value] / np.mean(neighbours)
        if ratio < SIZE_RATIO or ratio > 1 / SIZE_RATIO:
            size = "smaller" if ratio < 1 else "larger"
            flags.append(Flag("level_size_outlier", f"{spinal_level_name(value)} is {1 / ratio if ratio < 1 else ratio:.0f}"
                                                    f" times {size} than its neighbours.", spinal_level_name(value)))
    return flags


def _cord_centre_per_slice(cord: np.ndarray, affine: np.ndarray, axis: int) -> np.ndarray:
    """The cord's mean world left-right coordinate on each slice of `axis` (NaN where a slice has no cord)."""
    index = np.nonzero(cord)
    left_right = affine[0, :3] @ np.asarray(index) + affine[0, 3]
    counts = np.bincount(index[axis], minlength=cord.shape[axis])
    sums = np.bincount(index[axis], left_right, minlength=cord.shape[axis])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)


def one_sided_levels(labels: np.ndarray, present: list, counts: dict, cord: np.ndarray, affine: np.ndarray) -> list:
    """Levels whose voxels lie nearly all on one side of the cord's centre (on the slices that hold cord)."""
    axis = _superior_axis(affine)
    centre = _cord_centre_per_slice(cord > 0, affine, axis)
    flags = []
    for value in present:
        if counts[value] < MIN_VOXELS:
            continue
        index = np.nonzero(labels == value)
        left_right = affine[0, :3] @ np.asarray(index) + affine[0, 3]
        slice_centre = centre[index[axis]]
        beside = ~np.isnan(slice_centre)
        sides = np.array([(left_right[beside] < slice_centre[beside]).sum(),
                          (left_right[beside] > slice_centre[beside]).sum()])
        if sides.sum() >= MIN_VOXELS and sides.min() < SIDE_RATIO * sides.max():
            flags.append(Flag("one_sided_level", f"{spinal_level_name(value)} is labelled on one side of the cord "
                                                 f"only ({sides.min()} vs {sides.max()} voxels).",
                              spinal_level_name(value)))
    return flags


def far_from_cord(labels: np.ndarray, cord: np.ndarray, zooms) -> list:
    """Labels outside the spinal canal: farther from the cord than any rootlet runs inside it. Distances are
    measured in the labels' bounding box widened by the limit: a cord voxel outside it is farther than the limit
    from every label, so the count is exact."""
    labelled = labels > 0
    box = bounding_box(labelled, np.ceil(FAR_FROM_CORD_MM / np.asarray(zooms, float)).astype(int) + 1)
    cord_in_box = cord[box] > 0
    if cord_in_box.any():
        far = labelled[box] & (ndimage.distance_transform_edt(~cord_in_box, sampling=zooms) > FAR_FROM_CORD_MM)
    else:
        far = labelled[box]
    share = far.sum() / labelled.sum()
    if share <= FAR_SHARE:
        return []
    return [Flag("far_from_cord", f"{100 * share:.0f} % of the labelled voxels lie more than "
                                  f"{FAR_FROM_CORD_MM:.0f} mm from the cord.")]


def anatomical_flags(labels: np.ndarray, affine: np.ndarray, zooms, cord: Optional[np.ndarray] = None,
                     cord_problem: Optional[str] = None) -> list:
    """Every flag a label map raises, image-wide ones first. `cord` is the cord mask the run used (None: none);
    `cord_problem` the sentence saying why a computed cord was not used, if one was not."""
    flags = [] if cord_problem is None else [Flag("cord_not_used", cord_problem)]
    values, voxel_counts = np.unique(labels[labels > 0], return_counts=True)
    if values.size == 0:
        return flags + [Flag("no_rootlets", "No rootlet was found.")]
    present = [int(v) for v in values]
    counts = dict(zip(present, (int(c) for c in voxel_counts)))
    if cord is not None and cord.any():
        flags += far_from_cord(labels, cord, zooms)
    flags += missing_levels(present)
    flags += levels_out_of_order(present, _world_centroids(labels, affine, present))
    flags += size_outliers(labels, present, counts, affine)
    if cord is not None and cord.any():
        flags += one_sided_levels(labels, present, counts, cord, affine)
    return flags
