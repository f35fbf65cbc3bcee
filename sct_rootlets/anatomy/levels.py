"""Rootlets -> spinal levels of the cord, their distances from the PMJ, and vertebral levels from discs.

Two definitions of a level's extent along the cord:
- "extent" (published): dilate the cord, intersect with the rootlets; a level spans its most rostral to its most
  caudal intersected slice. Levels may overlap or leave gaps.
- "gapfree": each level runs from just below the caudal end of the level above to its own caudal end, so the
  levels tile the cord (the top level keeps its own rostral end).
Slices are RPI slice numbers (see `centerline.AxialFrame`); `slice_start` is the rostral end, so distances from
the PMJ grow from start to end. Lengths are arc lengths along the smoothed cord centerline.
"""

from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd

from sct_rootlets.anatomy.level_names import spinal_level_name, vertebral_level_name
from sct_rootlets.anatomy.centerline import AxialFrame, Centerline, bounding_box
from sct_rootlets.anatomy.postprocess import near_mask
from sct_rootlets.options import LEVEL_METHODS

SPINAL_COLUMNS = ["spinal_level", "fname", "slice_start", "slice_end", "distance_from_pmj_start",
                  "distance_from_pmj_end", "height", "slice_midpoint", "distance_from_pmj_midpoint"]


@dataclass(frozen=True)
class Extent:
    """A level's span in RPI slice numbers: `rostral` >= `caudal`."""
    level: int
    rostral: int
    caudal: int


def rootlet_extents(rootlets: np.ndarray, cord: np.ndarray, zooms_mm, frame: AxialFrame,
                    dilate_mm: float = 3.0) -> list:
    """The published extents: slices where each level's rootlets meet the cord dilated by `dilate_mm` (worked out
    in the dilated cord's box: no rootlet outside it meets the cord)."""
    near = near_mask(cord, zooms_mm, dilate_mm)
    if near is None:
        return []
    box, near_cord = near
    touching = np.where(near_cord, rootlets[box], 0)
    other_axes = tuple(axis for axis in range(3) if axis != frame.axis)
    extents = []
    for level in np.unique(touching[touching > 0]).astype(int):
        voxel_slices = np.flatnonzero(np.any(touching == level, axis=other_axes)) + box[frame.axis].start
        slices = frame.rpi_index(voxel_slices)
        extents.append(Extent(level=level, rostral=int(slices.max()), caudal=int(slices.min())))
    return extents


def gap_free(extents: list) -> list:
    """Re-cut extents so each level starts one slice below the caudal end of the level above."""
    ordered = sorted(extents, key=lambda e: e.level)
    result = ordered[:1]
    for extent in ordered[1:]:
        rostral = result[-1].caudal - 1
        result.append(Extent(extent.level, rostral, min(extent.caudal, rostral)))
    return result


def level_map(cord: np.ndarray, extents: list, frame: AxialFrame) -> np.ndarray:
    """The cord labelled with each level between its extents (caudal levels win where levels overlap)."""
    out = np.zeros(cord.shape, np.uint8)
    level_of_slice = np.zeros(cord.shape[frame.axis], np.uint8)  # by voxel index along the axial axis
    for extent in sorted(extents, key=lambda e: e.level):
        level_of_slice[frame.slab(extent.rostral, extent.caudal)[frame.axis]] = extent.level
    box = bounding_box(cord > 0)
    if box is not None:
        shape = [1, 1, 1]
        shape[frame.axis] = -1
        out[box] = np.where(cord[box] > 0, level_of_slice[box[frame.axis]].reshape(shape), 0)
    return out


def point_of(label_map: np.ndarray, affine: np.ndarray, value: Optional[int] = None):
    """(world mm, RPI slice) of the centroid of a point label (the voxels equal to `value`, or all non-zero)."""
    mask = label_map > 0 if value is None else label_map == value
    ijk = np.argwhere(mask).mean(axis=0)
    frame = AxialFrame.of(affine, label_map.shape)
    return affine[:3, :3] @ ijk + affine[:3, 3], int(round(float(frame.rpi_index(ijk[frame.axis]))))


DISTANCE_COLUMNS = ["distance_from_pmj_start", "distance_from_pmj_end", "distance_from_pmj_midpoint"]


def extents_table(extents: list, centerline: Centerline, reference_arc: float, fname: str,
                  name_column: str = "spinal_level") -> pd.DataFrame:
    """One row per level with the published columns (+ midpoints); distances from `reference_arc` in mm."""
    rows = []
    for extent in extents:
        start, end = centerline.arc_at(extent.rostral), centerline.arc_at(extent.caudal)
        rows.append({name_column: extent.level, "fname": fname, "slice_start": extent.rostral,
                     "slice_end": extent.caudal, "distance_from_pmj_start": start - reference_arc,
                     "distance_from_pmj_end": end - reference_arc, "height": end - start,
                     "slice_midpoint": (extent.rostral + extent.caudal) / 2,
                     "distance_from_pmj_midpoint": (start + end) / 2 - reference_arc})
    return pd.DataFrame(rows, columns=[name_column, *SPINAL_COLUMNS[1:]])


def points_of(label_map: np.ndarray, affine: np.ndarray) -> dict:
    """{value: (world mm, RPI slice)} of the centroid of each positive value of a point-label map (discs, say),
    as `point_of` gives each, in one pass over the map."""
    where = np.nonzero(label_map > 0)
    values = label_map[where]
    frame = AxialFrame.of(affine, label_map.shape)
    points = {}
    for value in np.unique(values):
        ijk = np.array([axis[values == value].mean() for axis in where])
        points[int(value)] = (affine[:3, :3] @ ijk + affine[:3, 3], int(round(float(frame.rpi_index(ijk[frame.axis])))))
    return points


def vertebral_extents(discs: np.ndarray, affine: np.ndarray) -> list:
    """Vertebra n spans from disc n (above it; SCT: 3 = C2/C3) to disc n+1 (below it)."""
    slices = {value: rpi for value, (_, rpi) in points_of(discs, affine).items()}
    values = sorted(slices)
    return [Extent(v, slices[v], slices[v + 1]) for v in values if v + 1 in slices]


def midpoint_differences(spinal: pd.DataFrame, vertebral: pd.DataFrame) -> pd.DataFrame:
    """Spinal minus vertebral midpoint (mm along the cord; > 0: the spinal level lies more caudal), by name."""
    arc = "distance_from_pmj_midpoint"
    spinal_mid = {spinal_level_name(int(r.spinal_level)): r for r in spinal.itertuples()}
    rows = []
    for row in vertebral.itertuples():
        name = vertebral_level_name(int(row.vertebral_level))
        if name in spinal_mid:
            s_mid, v_mid = getattr(spinal_mid[name], arc), getattr(row, arc)
            rows.append({"level": name, "spinal_level": spinal_mid[name].spinal_level,
                         "vertebral_level": row.vertebral_level, "spinal_midpoint_mm": s_mid,
                         "vertebral_midpoint_mm": v_mid, "difference_mm": s_mid - v_mid})
    return pd.DataFrame(rows, columns=["level", "spinal_level", "vertebral_level", "spinal_midpoint_mm",
                                       "vertebral_midpoint_mm", "difference_mm"])


@dataclass
class SpinalLevels:
    """Everything `compute_spinal_levels` derives; tables are pandas DataFrames."""
    level_map: np.ndarray
    spinal: pd.DataFrame
    vertebral: Optional[pd.DataFrame] = None
    differences: Optional[pd.DataFrame] = None


def compute_spinal_levels(rootlets: np.ndarray, cord: np.ndarray, affine: np.ndarray, zooms_mm, *,
                          fname: str, pmj: Optional[np.ndarray] = None, discs: Optional[np.ndarray] = None,
                          method: str = "extent", dilate_mm: float = 3.0) -> SpinalLevels:
    """Spinal levels from rootlets and a cord mask on one grid; PMJ and discs (same grid) are optional.

    Without a PMJ the `distance_from_pmj_*` columns are left empty (heights and midpoint differences remain).
    """
    if method not in LEVEL_METHODS:
        raise ValueError(f"method {method!r} must be one of {', '.join(LEVEL_METHODS)}")
    centerline = Centerline.fit(cord, affine)
    extents = rootlet_extents(rootlets, cord, zooms_mm, centerline.frame, dilate_mm)
    if method == "gapfree":
        extents = gap_free(extents)
    pmj_arc = None
    if pmj is not None:
        if not np.any(pmj):
            raise ValueError("the PMJ label is empty")
        pmj_arc = centerline.arc_of_point(*point_of(pmj, affine))
    # Without a PMJ, positions are measured from the top of the centerline: enough to compare midpoints.
    reference = pmj_arc if pmj_arc is not None else 0.0
    spinal = extents_table(extents, centerline, reference, fname)
    result = SpinalLevels(level_map=level_map(cord, extents, centerline.frame), spinal=spinal)
    if discs is not None:
        result.vertebral = extents_table(vertebral_extents(discs, affine), centerline, reference, fname,
                                         name_column="vertebral_level")
        result.differences = midpoint_differences(spinal, result.vertebral)
    if pmj_arc is None:
        for table in (result.spinal, result.vertebral):
            if table is not None:
                table[DISTANCE_COLUMNS] = np.nan
    return result
