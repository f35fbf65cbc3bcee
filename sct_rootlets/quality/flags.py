"""Anatomical flags: what a rootlets label map shows that a correct one would not, read from the labels alone
(and the cord mask where there is one), with no network.

Rootlets leave the cord on both sides at every level, one level below the other from C2 down; so a level missing
between present ones, two levels in the wrong order along the cord, a level on one side only, a level much smaller
or larger than its neighbours, labels far outside the spinal canal, and far fewer levels than the cord's length
holds all mean a correction is likely. The limits
were chosen by measurement on generated scans with graded degradations (bench/RESULTS.md, issue 29).

Everything is computed on the lists of labelled and cord voxels, never on whole volumes: a score must cost little
beside the prediction (at most 5 % of a run).
"""

from dataclasses import dataclass
from typing import Optional

import numpy as np

from sct_rootlets.anatomy.centerline import AxialFrame
from sct_rootlets.anatomy.level_names import spinal_level_name
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
#: Distance between the centres of consecutive rootlet levels in the PAM50 template, C2 to T1: 15.5-17.5 mm.
LEVEL_SPACING_MM = 16.5
#: Levels C2..T1 that a label map can hold.
LABELLED_LEVELS = 8
#: Levels with fewer voxels than this are too small to weigh sides or sizes.
MIN_VOXELS = 10


@dataclass(frozen=True)
class _Voxels:
    """The non-zero voxels of a volume: voxel indices (3, n), values (n,), world coordinates (3, n)."""
    index: np.ndarray
    values: np.ndarray
    world: np.ndarray

    @classmethod
    def of(cls, volume: np.ndarray, affine: np.ndarray) -> "_Voxels":
        flat = np.flatnonzero(volume)  # faster than a 3D nonzero
        index = np.asarray(np.unravel_index(flat, volume.shape))
        return cls(index, volume.reshape(-1)[flat], affine[:3, :3] @ index + affine[:3, 3:4])


def missing_levels(present: list) -> list:
    return [Flag("missing_level", f"{spinal_level_name(value)} is missing between {spinal_level_name(below)} and "
                                  f"{spinal_level_name(above)}.", spinal_level_name(value))
            for below, above in zip(present, present[1:]) for value in range(below + 1, above)]


def levels_out_of_order(present: list, labelled: _Voxels) -> list:
    """Each level's centre must lie below (inferior to) the centre of the level above it."""
    height = {value: labelled.world[2, labelled.values == value].mean() for value in present}
    return [Flag("levels_out_of_order", f"{spinal_level_name(lower)} lies above {spinal_level_name(upper)} along the "
                                        f"cord.", spinal_level_name(lower))
            for upper, lower in zip(present, present[1:]) if height[lower] > height[upper]]


def size_outliers(present: list, counts: dict, labelled: _Voxels, shape, axis: int) -> list:
    """Levels far smaller or larger than the mean of their present neighbours; a level that reaches the superior or
    inferior end of the field of view may be cut there, and is not judged."""
    flags = []
    for index, value in enumerate(present):
        neighbours = [counts[v] for v in present[max(index - 1, 0):index + 2] if v != value]
        reach = labelled.index[axis, labelled.values == value]
        if not neighbours or reach.min() == 0 or reach.max() == shape[axis] - 1:
            continue
        ratio = counts[value] / np.mean(neighbours)
        if ratio < SIZE_RATIO or ratio > 1 / SIZE_RATIO:
            size, times = ("smaller", 1 / ratio) if ratio < 1 else ("larger", ratio)
            flags.append(Flag("level_size_outlier", f"{spinal_level_name(value)} is {times:.0f} times {size} than its "
                                                    f"neighbours.", spinal_level_name(value)))
    return flags


@dataclass(frozen=True)
class _CordSlices:
    """The cord on each slice of the superior-inferior axis: its centre's world coordinates (3, slices) and the
    radius of the disc of its area (mm); NaN on slices without cord."""
    centre: np.ndarray
    radius: np.ndarray

    @classmethod
    def of(cls, cord: _Voxels, slices: int, axis: int, affine: np.ndarray) -> "_CordSlices":
        counts = np.bincount(cord.index[axis], minlength=slices).astype(float)
        counts[counts == 0] = np.nan
        centre = np.array([np.bincount(cord.index[axis], coordinate, minlength=slices) for coordinate in cord.world])
        in_plane = [a for a in range(3) if a != axis]
        voxel_area = np.prod(np.linalg.norm(affine[:3, in_plane], axis=0))
        return cls(centre / counts, np.sqrt(counts * voxel_area / np.pi))


def one_sided_levels(present: list, counts: dict, labelled: _Voxels, cord: _CordSlices, axis: int) -> list:
    """Levels whose voxels lie nearly all on one side of the cord's centre (on the slices that hold cord)."""
    flags = []
    for value in present:
        if counts[value] < MIN_VOXELS:
            continue
        mine = labelled.values == value
        left_right, slice_centre = labelled.world[0, mine], cord.centre[0, labelled.index[axis, mine]]
        beside = ~np.isnan(slice_centre)
        sides = np.array([(left_right[beside] < slice_centre[beside]).sum(),
                          (left_right[beside] > slice_centre[beside]).sum()])
        if sides.sum() >= MIN_VOXELS and sides.min() < SIDE_RATIO * sides.max():
            flags.append(Flag("one_sided_level", f"{spinal_level_name(value)} is labelled on one side of the cord "
                                                 f"only ({sides.min()} vs {sides.max()} voxels).",
                              spinal_level_name(value)))
    return flags


def far_from_cord(labelled: _Voxels, cord: _CordSlices, axis: int) -> list:
    """Labels outside the spinal canal: farther from the cord than any rootlet runs inside it, the cord taken on
    each slice as the disc of its area about its centre (labels on slices without cord are not judged)."""
    slices = labelled.index[axis]
    beside = ~np.isnan(cord.radius[slices])
    if not beside.any():
        return []
    from_surface = (np.linalg.norm(labelled.world[:, beside] - cord.centre[:, slices[beside]], axis=0)
                    - cord.radius[slices[beside]])
    share = np.mean(from_surface > FAR_FROM_CORD_MM)
    if share <= FAR_SHARE:
        return []
    return [Flag("far_from_cord", f"{100 * share:.0f} % of the labelled voxels lie more than "
                                  f"{FAR_FROM_CORD_MM:.0f} mm from the cord.")]


def few_levels(present: list, cord: _CordSlices, thickness_mm: float) -> list:
    """Fewer levels than half of those the cord's length holds (at one per `LEVEL_SPACING_MM`, 8 at most): half,
    because the field of view may reach above C2 (the brainstem) or below T1."""
    length = np.count_nonzero(~np.isnan(cord.radius)) * thickness_mm
    expected = int(min(LABELLED_LEVELS, length / LEVEL_SPACING_MM) // 2)
    if len(present) >= expected:
        return []
    return [Flag("few_levels", f"{len(present)} level(s) labelled along {length:.0f} mm of cord, which holds about "
                               f"{min(LABELLED_LEVELS, length / LEVEL_SPACING_MM):.0f}.")]


def anatomical_flags(labels: np.ndarray, affine: np.ndarray, cord: Optional[np.ndarray] = None,
                     cord_problem: Optional[str] = None) -> list:
    """Every flag a label map raises, image-wide ones first. `cord` is the cord mask the run used (None: none);
    `cord_problem` the sentence saying why a computed cord was not used, if one was not."""
    flags = [] if cord_problem is None else [Flag("cord_not_used", cord_problem)]
    labelled = _Voxels.of(labels, affine)
    if labelled.values.size == 0:
        return flags + [Flag("no_rootlets", "No rootlet was found.")]
    values, voxel_counts = np.unique(labelled.values, return_counts=True)
    present = [int(v) for v in values]
    counts = dict(zip(present, (int(c) for c in voxel_counts)))
    frame = AxialFrame.of(affine, labels.shape)
    axis = frame.axis
    cord_voxels = _Voxels.of(np.ascontiguousarray(cord > 0), affine) if cord is not None else None
    cord_slices = (_CordSlices.of(cord_voxels, labels.shape[axis], axis, affine)
                   if cord_voxels is not None and cord_voxels.values.size else None)
    if cord_slices is not None:
        flags += far_from_cord(labelled, cord_slices, axis)
        flags += few_levels(present, cord_slices, frame.thickness_mm)
    flags += missing_levels(present)
    flags += levels_out_of_order(present, labelled)
    flags += size_outliers(present, counts, labelled, labels.shape, axis)
    if cord_slices is not None:
        flags += one_sided_levels(present, counts, labelled, cord_slices, axis)
    return flags
