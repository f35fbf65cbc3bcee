"""Axial slices and the cord centerline, in a way that does not depend on how the image is stored.

Slices are taken along the voxel axis closest to the superior-inferior direction and numbered from the inferior
end ("RPI slice index", as SCT numbers slices after reorienting to RPI), so an image stored LAS, RPI or PSR gives
the same numbers. Positions along the cord are arc lengths in mm of a smoothed centerline in world coordinates.
"""

from dataclasses import dataclass

import numpy as np
from nibabel import orientations
from scipy import ndimage

#: Smoothing of the per-slice cord centroids (Gaussian sigma along the cord).
CENTERLINE_SMOOTHING_MM = 5.0


@dataclass(frozen=True)
class AxialFrame:
    """Which voxel axis is superior-inferior, and how to number its slices from the inferior end."""
    axis: int
    n_slices: int
    points_superior: bool     # True when the voxel index increases towards superior
    thickness_mm: float

    @classmethod
    def of(cls, affine: np.ndarray, shape) -> "AxialFrame":
        ornt = orientations.io_orientation(affine)
        codes = orientations.ornt2axcodes(ornt)
        axis = next(i for i, code in enumerate(codes) if code in ("S", "I"))
        thickness = float(np.linalg.norm(affine[:3, axis]))
        return cls(axis=axis, n_slices=int(shape[axis]), points_superior=codes[axis] == "S", thickness_mm=thickness)

    def rpi_index(self, voxel_index):
        """Voxel index along the axial axis -> slice number counted from the inferior end."""
        voxel_index = np.asarray(voxel_index)
        return voxel_index if self.points_superior else self.n_slices - 1 - voxel_index

    def voxel_index(self, rpi_index):
        """The inverse of `rpi_index` (the mapping is its own inverse)."""
        return self.rpi_index(rpi_index)

    def slices_of(self, mask: np.ndarray) -> np.ndarray:
        """RPI slice numbers holding at least one voxel of `mask`, ascending."""
        other_axes = tuple(a for a in range(3) if a != self.axis)
        present = np.flatnonzero(np.any(mask, axis=other_axes))
        return np.sort(self.rpi_index(present))

    def slab(self, rpi_start: int, rpi_end: int):
        """Index expression selecting RPI slices rpi_start..rpi_end inclusive (any order)."""
        low, high = sorted((int(rpi_start), int(rpi_end)))
        voxel = sorted((int(self.voxel_index(low)), int(self.voxel_index(high))))
        index = [slice(None)] * 3
        index[self.axis] = slice(voxel[0], voxel[1] + 1)
        return tuple(index)


def bounding_box(mask: np.ndarray, margin_voxels=0):
    """The smallest box holding every non-zero voxel of a 3D mask, widened by `margin_voxels` (one number, or one
    per axis) and clipped to the array: a tuple of 3 slices, or None for an empty mask."""
    margins = [int(margin) for margin in np.broadcast_to(np.asarray(margin_voxels, int), (3,))]
    box = []
    for axis in range(3):
        present = np.flatnonzero(np.any(mask, axis=tuple(other for other in range(3) if other != axis)))
        if present.size == 0:
            return None
        box.append(slice(max(int(present[0]) - margins[axis], 0),
                         min(int(present[-1]) + 1 + margins[axis], mask.shape[axis])))
    return tuple(box)


def slice_centroids(mask: np.ndarray, axis: int) -> tuple:
    """Centroids of the voxels > 0 of each slice along `axis` that holds any, from sums over the mask's bounding
    box: (voxel indices of those slices along `axis`, ascending; (n, 3) centroids in voxel coordinates, the
    `axis` coordinate being the slice's own index).

    Each centroid is the exact integer sum of the voxel indices divided once by the voxel count, as
    `np.argwhere(slice).mean(axis=0)` gives it, with no per-slice copy of the volume.
    """
    positive = np.asarray(mask) > 0
    box = bounding_box(positive)
    if box is None:
        return np.zeros(0, np.intp), np.zeros((0, 3))
    inside = np.moveaxis(positive[box], axis, 0)             # (slices, u, v) of the box
    others = [a for a in range(3) if a != axis]              # u, v
    per_u, per_v = inside.sum(axis=2, dtype=np.int64), inside.sum(axis=1, dtype=np.int64)
    counts = per_u.sum(axis=1)
    occupied = np.flatnonzero(counts)
    centroids = np.empty((occupied.size, 3))
    for other, per_slice in zip(others, (per_u, per_v)):
        index = np.arange(box[other].start, box[other].stop, dtype=np.int64)
        centroids[:, other] = (per_slice[occupied] @ index) / counts[occupied]  # integer sums: exact
    voxel_slices = occupied + box[axis].start
    centroids[:, axis] = voxel_slices
    return voxel_slices, centroids


def smooth_along(points: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of a polyline's points (n, 3) along its length that keeps straight runs straight up to
    its ends: the line is continued beyond each end by point reflection (2 * end - mirrored point, as
    `scipy.signal.filtfilt` pads by default), so a straight centerline keeps its length; repeating the end points
    would pull the ends inward and shorten arc lengths there. A line shorter than the kernel's reach is continued
    by n - 1 points, then by its last continued point."""
    if len(points) < 2:
        return points
    radius = min(int(4 * sigma + 0.5), len(points) - 1)  # gaussian_filter1d's reach (truncate=4), at most n - 1
    extended = np.pad(points, ((radius, radius), (0, 0)), mode="reflect", reflect_type="odd")
    return ndimage.gaussian_filter1d(extended, sigma, axis=0, mode="nearest")[radius:radius + len(points)]


@dataclass(frozen=True)
class Centerline:
    """A smoothed cord centerline: one world point (mm) per RPI slice from `first_slice` to `last_slice`.

    `arc_mm[k]` is the arc length from the most superior point down to slice `last_slice - k`.
    """
    frame: AxialFrame
    first_slice: int            # most inferior slice with cord
    last_slice: int             # most superior slice with cord
    points_mm: np.ndarray       # (n, 3), ordered superior -> inferior
    arc_mm: np.ndarray          # (n,), 0 at the most superior point

    @classmethod
    def fit(cls, cord_mask: np.ndarray, affine: np.ndarray) -> "Centerline":
        """Per-slice centroids of the cord, interpolated over gaps, smoothed, in world millimetres."""
        frame = AxialFrame.of(affine, cord_mask.shape)
        voxel_slices, ijk = slice_centroids(cord_mask, frame.axis)
        if voxel_slices.size == 0:
            raise ValueError("the cord mask is empty")
        world = ijk @ np.asarray(affine, float)[:3, :3].T + np.asarray(affine, float)[:3, 3]
        ascending = np.argsort(frame.rpi_index(voxel_slices))
        slices, world = frame.rpi_index(voxel_slices)[ascending], world[ascending]  # RPI slices with cord
        descending = np.arange(slices.max(), slices.min() - 1, -1)  # superior -> inferior
        points = np.stack([np.interp(descending, slices, world[:, c]) for c in range(3)], axis=1)
        points = smooth_along(points, CENTERLINE_SMOOTHING_MM / frame.thickness_mm)
        steps = np.linalg.norm(np.diff(points, axis=0), axis=1)
        return cls(frame=frame, first_slice=int(slices.min()), last_slice=int(slices.max()), points_mm=points,
                   arc_mm=np.concatenate([[0.0], np.cumsum(steps)]))

    def arc_at(self, rpi_slice) -> float:
        """Arc length (mm) from the top of the centerline to a slice; straight extension beyond its ends."""
        rpi_slice = float(rpi_slice)
        if rpi_slice > self.last_slice:
            return -(rpi_slice - self.last_slice) * self.frame.thickness_mm
        if rpi_slice < self.first_slice:
            return self.arc_mm[-1] + (self.first_slice - rpi_slice) * self.frame.thickness_mm
        position = self.last_slice - rpi_slice
        return float(np.interp(position, np.arange(len(self.arc_mm)), self.arc_mm))

    def arc_of_point(self, world_mm: np.ndarray, rpi_slice: int) -> float:
        """Arc coordinate of a landmark (e.g. the PMJ); above the cord, the straight distance to its top."""
        if rpi_slice > self.last_slice:
            return -float(np.linalg.norm(np.asarray(world_mm) - self.points_mm[0]))
        return self.arc_at(rpi_slice)
