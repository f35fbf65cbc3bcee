"""Per-level cleaning of rootlets label maps, and dilation with `sct_maths -dilate` semantics.

Generic binary tools break a level-labelled map (SCT's -remove-small treats it as one mask; scikit-image's
remove_small_objects takes integer images as already-labelled objects and drops whole levels). Here every
operation works level by level, with sizes and distances in millimetres so results do not depend on voxel size.
All functions are pure: label array (+ voxel sizes) in, new label array out.
"""

import re
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np
from scipy import ndimage

from sct_rootlets.anatomy.centerline import bounding_box
from sct_rootlets.options import DEFAULT_CANAL_MM, DILATION_SHAPES

#: 26-connectivity: a thin oblique rootlet touches itself only diagonally.
_CONNECTIVITY = np.ones((3, 3, 3), bool)


def remove_small_components(labels: np.ndarray, zooms_mm, min_volume_mm3: float) -> np.ndarray:
    """Zero each connected piece of each level whose volume is below `min_volume_mm3`."""
    voxel_mm3 = float(np.prod(zooms_mm[:3]))
    out = labels.copy()
    for level in np.unique(labels[labels > 0]):
        components, count = ndimage.label(labels == level, structure=_CONNECTIVITY)
        sizes_mm3 = np.bincount(components.ravel())[1:] * voxel_mm3
        small = np.flatnonzero(sizes_mm3 < min_volume_mm3) + 1
        out[np.isin(components, small)] = 0
    return out


def near_mask(mask: np.ndarray, zooms_mm, distance_mm: float) -> tuple:
    """Where a 3D mask is within `distance_mm` (Euclidean, in mm; voxel sizes `zooms_mm`): (box, near), `near`
    being True over the box (a tuple of slices) where the distance to the nearest non-zero voxel of `mask` is at
    most `distance_mm`. No voxel outside the box is that close: it is the mask's bounding box widened by more
    than `distance_mm` (clipped to the array), so the distance map, made over the box alone, equals the one over
    the whole field there. None for an empty mask."""
    zooms = np.asarray(zooms_mm[:3], float)
    box = bounding_box(mask, np.floor(distance_mm / zooms).astype(int) + 1)
    if box is None:
        return None
    return box, ndimage.distance_transform_edt(mask[box] == 0, sampling=zooms) <= distance_mm


def keep_near_cord(labels: np.ndarray, cord_mask: np.ndarray, zooms_mm, max_distance_mm: float) -> np.ndarray:
    """Zero rootlet voxels farther than `max_distance_mm` (Euclidean, in mm) from the cord mask."""
    near = near_mask(cord_mask, zooms_mm, max_distance_mm)
    if near is None:
        raise ValueError("the cord mask is empty")
    box, near_in_box = near
    out = np.zeros_like(labels)
    out[box] = np.where(near_in_box, labels[box], 0)
    return out


def keep_level_range(labels: np.ndarray, lowest: int, highest: int) -> np.ndarray:
    """Keep levels lowest..highest (e.g. 2..9 for C2..T1), zero the others."""
    return np.where((labels >= lowest) & (labels <= highest), labels, 0).astype(labels.dtype)


def remove_caudal_to_point(labels: np.ndarray, affine: np.ndarray, point_ijk) -> np.ndarray:
    """Zero every voxel whose world superior coordinate is below that of a point (e.g. a disc label).

    Used to drop false positives below T1 and, in children, levels below a given disc.
    """
    superior_row = affine[2, :3]
    index = np.indices(labels.shape).reshape(3, -1)
    superior_mm = (superior_row @ index).reshape(labels.shape) + affine[2, 3]
    threshold = superior_row @ np.asarray(point_ijk, float) + affine[2, 3]
    return np.where(superior_mm >= threshold, labels, 0).astype(labels.dtype)


def _level_pieces(labels: np.ndarray, affine: np.ndarray) -> list:
    """Connected pieces (26-connected) of each level's own mask: per level, (level, voxel indices, piece number
    of each voxel, voxel count and world superior coordinate of the centroid in mm of each piece)."""
    superior_row = affine[2, :3]
    pieces = []
    for level in np.unique(labels[labels > 0]):
        components, count = ndimage.label(labels == level, structure=_CONNECTIVITY)
        where = np.nonzero(components)
        numbers = components[where] - 1
        voxels = np.bincount(numbers, minlength=count)
        superior_mm = superior_row @ np.array(where, float) + affine[2, 3]
        centroid_superior_mm = np.bincount(numbers, weights=superior_mm, minlength=count) / voxels
        pieces.append((level, where, numbers, voxels, centroid_superior_mm))
    return pieces


def _isotonic_levels(original: np.ndarray, voxels: np.ndarray, n_levels: int) -> np.ndarray:
    """Level indices, non-decreasing along the list, that change the fewest voxels; among those, the ones
    closest to the original indices (voxel-weighted), so a changed piece takes the nearest level its
    neighbours allow. Dynamic programming over pieces x levels: O(pieces x levels) time and memory.

    `original`: level index (0..n_levels-1) of each piece, in list order; `voxels`: its voxel count.
    """
    n_pieces = len(original)
    choices = np.arange(n_levels)
    # One integer cost, (changed voxels, voxel-weighted index distance) compared lexicographically: the distance
    # term of a whole solution is below `scale`, so it only breaks ties between equally few changed voxels.
    scale = int(voxels.sum()) * max(n_levels - 1, 1) + 1
    best_before = np.zeros((n_pieces, n_levels), np.intp)  # best level of the previous piece, given this one's
    # each piece's own cost of each choice: per voxel, `scale` if its level changes plus the index distance
    per_voxel = scale * (choices[:, None] != choices) + np.abs(choices[:, None] - choices)  # [level, choice]
    own = per_voxel.astype(np.int64)[original] * np.asarray(voxels, np.int64)[:, None]
    cost, running = own[0], np.empty(n_levels, np.int64)
    new_minimum = np.ones(n_levels, bool)
    for index in range(1, n_pieces):
        # the previous piece's best level <= each choice (the lowest one on ties), and its cost
        np.minimum.accumulate(cost, out=running)
        np.less(cost[1:], running[:-1], out=new_minimum[1:])
        best_before[index] = np.maximum.accumulate(choices * new_minimum)
        cost = running + own[index]
    chosen = np.empty(n_pieces, np.intp)
    chosen[-1] = int(np.argmin(cost))
    for index in range(n_pieces - 1, 0, -1):
        chosen[index - 1] = best_before[index, chosen[index]]
    return chosen


def order_levels_rostro_caudally(labels: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Relabel the fewest voxels so that levels follow head-to-foot order (C2 highest ... T1 lowest).

    Pieces are the 26-connected components of each level's own mask, placed at the world superior coordinate
    (RAS+ z through `affine`, voxel -> world mm) of their centroid. Each piece gets a level such that a piece
    higher than another never has a larger level value, changing as few voxels as possible (a voxel-weighted
    discrete isotonic fit); a piece that changes takes the level nearest its own that its neighbours allow
    (e.g. a small C3 piece below C6 and above C7 becomes C6). Pieces at the same height are placed in level
    order, so they never force a change. Afterwards each level's centroid is at or below the previous level's.

    New levels are chosen among the levels present: that loses nothing (the pieces that keep their level
    already use present levels, and a changed piece can take the level of the nearest kept piece above or
    below it at the same cost) and never invents a level the network did not predict. Values <= 0 are
    background and left alone; no voxel is added or removed; shape and dtype are kept. An empty map, a map of
    one level, or one already in order comes back unchanged (as a copy).
    """
    out = labels.copy()
    foreground = labels > 0
    if not foreground.any():
        return out
    # work in the bounding box of the labels (a few percent of a scan); the box's voxel (0, 0, 0) is `start`
    box = tuple(slice(indices[0], indices[-1] + 1) for indices in
                (np.flatnonzero(foreground.any(axis=tuple(other for other in range(3) if other != axis)))
                 for axis in range(3)))
    start = np.array([axis.start for axis in box], float)
    box_affine = np.array(affine, float)
    box_affine[:3, 3] += affine[:3, :3] @ start
    per_level = _level_pieces(labels[box], box_affine)
    if len(per_level) < 2:
        return out
    levels = np.array([level for level, *_ in per_level])
    level_index = np.concatenate([np.full(len(voxels), index) for index, (*_, voxels, _) in enumerate(per_level)])
    voxels = np.concatenate([voxels for *_, voxels, _ in per_level])
    superior_mm = np.concatenate([superior for *_, superior in per_level])
    order = np.lexsort((level_index, -superior_mm))  # highest first; at the same height, the lower level first
    new_index = np.empty_like(level_index)
    new_index[order] = _isotonic_levels(level_index[order], voxels[order], len(levels))
    out_box, first = out[box], 0  # a view: writing into it writes into `out`
    for level, where, numbers, piece_voxels, _ in per_level:
        voxel_levels = levels[new_index[first:first + len(piece_voxels)]][numbers]
        first += len(piece_voxels)
        changed = voxel_levels != level
        out_box[tuple(axis[changed] for axis in where)] = voxel_levels[changed]
    return out


def parse_dilation_size(text: str) -> tuple:
    """'3' -> (3,), '1x4' -> (1, 4), '2x2x0' -> (2, 2, 0): sizes in voxels as sct_maths -dilate takes them."""
    if not re.fullmatch(r"\d+(x\d+){0,2}", text.strip()):
        raise ValueError(f"dilation size {text!r} must be N, AxB or AxBxC (whole numbers of voxels)")
    return tuple(int(part) for part in text.strip().split("x"))


def _ellipsoid(radii) -> np.ndarray:
    """Voxels with sum((x_i / r_i)^2) <= 1, multiplied out so it is exact in integers and a zero radius gives the
    full box over the other axes, as sct_maths does (ball 2x2x0 -> 5x5x1 = 25 voxels)."""
    grids = np.ogrid[tuple(slice(-r, r + 1) for r in radii)]
    scales = [int(np.prod(np.delete(radii, axis))) for axis in range(len(radii))]
    return sum((grid * scale) ** 2 for grid, scale in zip(grids, scales)) <= int(np.prod(radii)) ** 2


def dilation_footprint(size: tuple, shape: str = "ball", dim: int = None) -> np.ndarray:
    """The 3D structuring element of `sct_maths -dilate SIZE -shape SHAPE [-dim DIM]`.

    ball/disk: SIZE is the radius not counting the centre (0 does nothing); several values give an ellipsoid.
    cube/square: SIZE is the edge length (1 does nothing); several values give a box.
    ball/cube take 1 or 3 values (x, y, z); disk/square 1 or 2, for the two axes other than `dim`, in order.
    """
    if shape not in DILATION_SHAPES:
        raise ValueError(f"dilation shape {shape!r} must be one of {', '.join(DILATION_SHAPES)}")
    planar = shape in ("disk", "square")
    if planar and dim not in (0, 1, 2):
        raise ValueError(f"shape {shape} is 2D: give the axis it is orthogonal to (dim 0, 1 or 2)")
    if not planar and dim is not None:
        raise ValueError(f"shape {shape} is 3D: dim applies to disk and square only")
    n_axes = 2 if planar else 3
    if len(size) not in (1, n_axes):
        raise ValueError(f"shape {shape} takes 1 or {n_axes} sizes, not {'x'.join(map(str, size))}")
    sizes = tuple(size) * n_axes if len(size) == 1 else tuple(size)
    if shape in ("cube", "square") and min(sizes) < 1:
        raise ValueError("cube and square edges must be at least 1 voxel")
    footprint = _ellipsoid(sizes) if shape in ("ball", "disk") else np.ones(sizes, bool)
    return np.expand_dims(footprint, dim) if planar else footprint


#: sct_maths dilates these types with scikit-image's rank filter, which centres an even edge one voxel higher
#: than its other path (scikit-image's morphology, like scipy's default) does for every other type.
_RANK_FILTER_DTYPES = (np.uint8, np.uint16)


def dilate(labels: np.ndarray, size: tuple, shape: str = "ball", dim: int = None) -> np.ndarray:
    """Greyscale dilation: each voxel takes the highest label within the footprint, so levels survive.

    Give `labels` in the type the file stores (a uint8 rootlets map, say): like sct_maths, the type decides on
    which side of the voxel an even cube or square edge (e.g. cube 2) extends.
    """
    footprint = dilation_footprint(size, shape, dim)
    rank_path = labels.dtype in _RANK_FILTER_DTYPES
    origin = [-1 if rank_path and length % 2 == 0 else 0 for length in footprint.shape]
    return ndimage.grey_dilation(labels, footprint=footprint, mode="nearest", origin=origin).astype(labels.dtype)


@dataclass(frozen=True)
class PostProcessing:
    """Post-processing chosen on the command line, applied in a fixed order: level range, cut below a disc,
    distance to the cord, small components, rostro-caudal level order, dilation. Unset steps are skipped.

    Distance to the cord: `max_distance_mm`, the user's number, needs a cord mask. Without it, `canal_mm` (on by
    default; None or 0 turns it off) removes labels outside the spinal canal whenever `apply` is given a cord
    mask, and is skipped silently when none is at hand: an anatomical default never makes a cord required.

    Levels are put in order after the cleaning steps, so pieces about to be dropped (far from the cord, too
    small, outside the level range) neither count nor force changes, and before dilation, so the voxels counted
    are the network's own (dilation grows pieces and lets the higher value win where levels meet)."""
    level_range: Optional[tuple] = None         # (lowest, highest) label value
    below_disc: Optional[int] = None            # disc label value; needs disc labels
    max_distance_mm: Optional[float] = None     # needs a cord mask
    canal_mm: Optional[float] = DEFAULT_CANAL_MM  # applied when a cord mask is given; max_distance_mm wins
    min_volume_mm3: Optional[float] = None
    order_levels: bool = True                   # see order_levels_rostro_caudally
    dilation: Optional[tuple] = None            # sct_maths size, e.g. (2,) or (2, 2, 0)
    dilation_shape: str = "ball"
    dilation_dim: Optional[int] = None

    @property
    def needs_cord(self) -> bool:
        return self.max_distance_mm is not None

    @property
    def needs_discs(self) -> bool:
        return self.below_disc is not None

    def apply(self, labels: np.ndarray, zooms_mm, affine: np.ndarray, cord: Optional[np.ndarray] = None,
              discs: Optional[np.ndarray] = None) -> np.ndarray:
        if self.level_range is not None:
            labels = keep_level_range(labels, *self.level_range)
        if self.below_disc is not None:
            if discs is None or not np.any(discs == self.below_disc):
                raise ValueError(f"disc label {self.below_disc} is not in the disc labels")
            labels = remove_caudal_to_point(labels, affine, np.argwhere(discs == self.below_disc).mean(axis=0))
        if self.max_distance_mm is not None:
            labels = keep_near_cord(labels, cord, zooms_mm, self.max_distance_mm)
        elif self.canal_mm and cord is not None and np.any(cord):
            labels = keep_near_cord(labels, cord, zooms_mm, self.canal_mm)
        if self.min_volume_mm3 is not None:
            labels = remove_small_components(labels, zooms_mm, self.min_volume_mm3)
        if self.order_levels:
            labels = order_levels_rostro_caudally(labels, affine)
        if self.dilation is not None:
            labels = dilate(labels, self.dilation, self.dilation_shape, self.dilation_dim)
        return labels

    def as_dict(self) -> dict:
        """The steps that are set, for provenance sidecars. order_levels and canal_mm appear only when on (canal_mm
        also not when max_distance_mm replaces it), so a map made without them (turned off, or before they existed)
        has the same record and a resumed batch keeps it. canal_mm acted only if the run had a cord mask."""
        record = {key: value for key, value in asdict(self).items()
                  if value is not None and not (key.startswith("dilation_") and self.dilation is None)}
        if not self.order_levels:
            del record["order_levels"]
        if not self.canal_mm or self.max_distance_mm is not None:
            record.pop("canal_mm", None)
        return record
