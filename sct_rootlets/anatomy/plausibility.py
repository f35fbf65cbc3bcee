"""Is a computed cord mask a spinal cord? Checked before the mask crops the network or filters the labels.

A cord model that has learnt a contrast rather than the anatomy (e.g. "darker than the CSF", trained on T2w) can
return a few wrong voxels on another contrast and still "find" a cord. Cropping the rootlets network to that
place would silently lose the rootlets of every level it does not reach, so a computed mask is measured against
what an adult cervical cord looks like on any MRI, and an implausible one is not used (the whole image is
predicted instead). Masks the user gives (-s) are never second-guessed.

The limits and their sources (README, "Contrasts"; the figures measured with `measure_cord` on 2026-12-07):
- cross-sectional area: the median over the mask's axial slices. The PAM50 cord (0.5 mm) has medians of
  51-73 mm² per cervical vertebral level, 45 at T1 and 34-41 from T2 to T12 (none below 33); the manual masks at
  hand have medians of 69-71 mm² (4 sagittal 1 mm T2w), 77 (1 mm T1w), 79 (0.5x0.5x7.5 mm T2*w), 76-78
  (0.84x0.84x16.5 mm MT) and 50 (a 0.8 mm T2w crop). Limits 20-150 mm²: room below for thoracic fields of view
  and atrophy, above for the partial volume of coarse voxels; the wrong "cord" a T2w-trained model finds on a
  real T1w scan measures 5 mm².
- continuity: every manual mask at hand holds cord on all slices between its ends; a piece of wrong voxels skips
  many (27 % on that T1w scan). At least 80 %.
- extent along the cord: at least 40 % of the field of view's superior-inferior length (10 mm at least, the
  whole field of view at most): cervical acquisitions are planned on the cord, and the manual masks at hand span
  97-100 % of theirs (PAM50's cord 96 % of the template).
"""

from dataclasses import dataclass
from typing import Optional

import numpy as np

from sct_rootlets.anatomy.centerline import AxialFrame

#: Median cross-sectional area limits, mm² (see the module docstring for their source).
MIN_AREA_MM2 = 20.0
MAX_AREA_MM2 = 150.0
#: Share of the slices between the mask's ends that must hold cord.
MIN_CONTINUITY = 0.8
#: Share of the field of view's superior-inferior length the mask must span, and the absolute floor.
MIN_EXTENT_SHARE = 0.4
MIN_EXTENT_MM = 10.0


@dataclass(frozen=True)
class CordMeasures:
    """What the plausibility check looks at, in mm and mm²."""
    median_area_mm2: float
    continuity: float
    extent_mm: float
    field_of_view_mm: float

    def as_dict(self) -> dict:
        return {"MedianAreaMM2": round(self.median_area_mm2, 1), "Continuity": round(self.continuity, 3),
                "ExtentMM": round(self.extent_mm, 1), "FieldOfViewMM": round(self.field_of_view_mm, 1)}


def measure_cord(mask: np.ndarray, affine: np.ndarray) -> CordMeasures:
    """Measures of a non-empty binary mask on a grid with this affine (slices: the axis closest to
    superior-inferior; areas in that axis' voxel planes, which a 12-degree obliquity changes by 2 %)."""
    frame = AxialFrame.of(affine, mask.shape)
    other_axes = tuple(a for a in range(3) if a != frame.axis)
    in_plane_mm2 = float(np.prod([np.linalg.norm(affine[:3, a]) for a in other_axes]))
    counts = np.count_nonzero(mask, axis=other_axes)
    present = np.flatnonzero(counts)
    span = int(present[-1] - present[0] + 1)
    return CordMeasures(median_area_mm2=float(np.median(counts[present])) * in_plane_mm2,
                        continuity=present.size / span, extent_mm=span * frame.thickness_mm,
                        field_of_view_mm=frame.n_slices * frame.thickness_mm)


def implausibility(measures: CordMeasures) -> Optional[str]:
    """Why a mask with these measures is not an adult spinal cord (a phrase for the user), or None if it may be."""
    if not MIN_AREA_MM2 <= measures.median_area_mm2 <= MAX_AREA_MM2:
        return (f"its median cross-section is {measures.median_area_mm2:.0f} mm², outside the adult cord's "
                f"{MIN_AREA_MM2:.0f}-{MAX_AREA_MM2:.0f} mm²")
    if measures.continuity < MIN_CONTINUITY:
        return (f"it is missing from {100 * (1 - measures.continuity):.0f}% of the slices between its ends "
                f"(at most {100 * (1 - MIN_CONTINUITY):.0f}%)")
    needed = min(max(MIN_EXTENT_MM, MIN_EXTENT_SHARE * measures.field_of_view_mm), measures.field_of_view_mm)
    if measures.extent_mm < needed - 1e-6:
        return (f"it spans {measures.extent_mm:.0f} mm of the {measures.field_of_view_mm:.0f} mm field of view "
                f"along the cord (at least {needed:.0f} mm)")
    return None
