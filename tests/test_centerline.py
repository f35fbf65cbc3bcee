"""The one-pass forms of the levels' and post-processing's work (issue 20) against brute force on small volumes:
slice centroids against a per-slice `argwhere`, the centerline against centroids worked out slice by slice,
distance maps over the cord's box against the whole field's, extents, level maps and disc points against their
per-level, per-slab and per-value forms. Storage orientations and voxel sizes vary, so the slice numbering and
the millimetre margins are exercised."""

import nibabel as nib
import numpy as np
import pytest
from nibabel import orientations
from scipy import ndimage

from sct_rootlets.anatomy import levels, postprocess
from sct_rootlets.anatomy.centerline import CENTERLINE_SMOOTHING_MM, AxialFrame, Centerline, bounding_box, \
    slice_centroids

#: nibabel axis codes -> a 3x3 direction matrix, voxel sizes per axis
STORAGES = {"RAS": (("R", "A", "S"), (0.8, 0.8, 0.8)),          # SCT LPI, superior along axis 2
            "LAS": (("L", "A", "S"), (0.5, 0.5, 0.5)),          # SCT RPI (PAM50)
            "PSR": (("A", "I", "L"), (1.0, 1.0, 1.0)),          # SCT PSR (sagittal scans): superior along axis 1, down
            "RAI": (("R", "A", "I"), (0.6, 0.7, 2.5))}          # axial slab, inferior along axis 2


def _affine(codes, zooms, shape) -> np.ndarray:
    """A voxel -> world affine for storage `codes` (nibabel), oblique by a few degrees, with an arbitrary origin."""
    ornt = orientations.axcodes2ornt(codes)
    affine = np.eye(4)
    for axis, (world, flip) in enumerate(ornt.astype(int)):
        affine[:3, axis] = 0
        affine[world, axis] = flip * zooms[axis]
    angle = np.deg2rad(4.0)
    tilt = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    affine[:3, :3] = tilt @ affine[:3, :3]
    affine[:3, 3] = affine[:3, :3] @ (-np.asarray(shape) / 2) + [3.0, -7.5, 12.25]
    return affine


def _tube(shape, axis, seed, gaps=True) -> np.ndarray:
    """A wandering cord-like tube along `axis` over most slices, with a few empty slices in it."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, bool)
    others = [a for a in range(3) if a != axis]
    n = shape[axis]
    centre = np.array([shape[a] / 2 for a in others])
    for index in range(2, n - 3):
        centre += rng.normal(0, 0.4, 2)
        radius = rng.uniform(1.0, 2.6)
        grid = np.ogrid[:shape[others[0]], :shape[others[1]]]
        disk = (grid[0] - centre[0]) ** 2 + (grid[1] - centre[1]) ** 2 <= radius ** 2
        where = [slice(None)] * 3
        where[axis] = index
        mask[tuple(where)] = disk
    if gaps:
        for index in rng.choice(np.arange(4, n - 5), 3, replace=False):
            where = [slice(None)] * 3
            where[axis] = index
            mask[tuple(where)] = False
    return mask


def _brute_centroids(mask, axis):
    """{voxel slice index: centroid (3,) in voxel coordinates}, one np.take + argwhere per slice."""
    out = {}
    for index in range(mask.shape[axis]):
        inside = np.argwhere(np.take(mask, index, axis=axis) > 0)
        if len(inside):
            ijk = np.insert(inside.mean(axis=0), axis, index)
            out[index] = ijk
    return out


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("seed", [0, 1])
def test_slice_centroids_equal_a_per_slice_mean(axis, seed):
    rng = np.random.default_rng(seed)
    mask = (rng.random((9, 11, 13)) < 0.15).astype(np.uint8) * rng.integers(1, 4, (9, 11, 13)).astype(np.uint8)
    where = [slice(None)] * 3
    where[axis] = slice(0, 2)
    mask[tuple(where)] = 0              # empty slices at one end and (below) in the middle
    where[axis] = 5
    mask[tuple(where)] = 0
    slices, centroids = slice_centroids(mask, axis)
    expected = _brute_centroids(mask, axis)
    np.testing.assert_array_equal(slices, sorted(expected))
    np.testing.assert_array_equal(centroids, np.array([expected[k] for k in sorted(expected)]))  # bit for bit


def test_slice_centroids_and_bounding_box_of_an_empty_mask():
    slices, centroids = slice_centroids(np.zeros((4, 5, 6)), 2)
    assert slices.size == 0 and centroids.shape == (0, 3)
    assert bounding_box(np.zeros((4, 5, 6), bool)) is None


def test_bounding_box_with_margins_is_clipped():
    mask = np.zeros((10, 12, 14), bool)
    mask[1, 5:7, 12] = True
    assert bounding_box(mask) == (slice(1, 2), slice(5, 7), slice(12, 13))
    assert bounding_box(mask, (2, 3, 4)) == (slice(0, 4), slice(2, 10), slice(8, 14))


@pytest.mark.parametrize("storage", STORAGES)
def test_centerline_follows_the_per_slice_centroids(storage):
    """Worked out slice by slice: world centroid of each RPI slice (numbered from the inferior end), linear
    interpolation over empty slices, Gaussian smoothing of 5 mm along the cord, arc lengths between points."""
    codes, zooms = STORAGES[storage]
    shape = (24, 30, 40) if storage != "PSR" else (30, 40, 24)
    affine = _affine(codes, zooms, shape)
    axis = next(a for a, code in enumerate(nib.aff2axcodes(affine)) if code in "SI")
    mask = _tube(shape, axis, seed=3)
    superior = nib.aff2axcodes(affine)[axis] == "S"
    centerline = Centerline.fit(mask, affine)

    by_voxel = _brute_centroids(mask, axis)
    world = {(k if superior else shape[axis] - 1 - k): nib.affines.apply_affine(affine, ijk)
             for k, ijk in by_voxel.items()}
    rpi = np.array(sorted(world))
    assert (centerline.first_slice, centerline.last_slice) == (rpi.min(), rpi.max())
    top_down = np.arange(rpi.max(), rpi.min() - 1, -1)
    points = np.stack([np.interp(top_down, rpi, [world[k][c] for k in rpi]) for c in range(3)], axis=1)
    sigma = CENTERLINE_SMOOTHING_MM / zooms[axis]
    # continued beyond each end by point reflection over up to the kernel's reach (at most n - 1 points), so that
    # a straight run stays straight to the ends; beyond that, the last continued point repeats
    reach = min(int(4 * sigma + 0.5), len(points) - 1)
    before = [2 * points[0] - points[k] for k in range(reach, 0, -1)]
    after = [2 * points[-1] - points[-1 - k] for k in range(1, reach + 1)]
    extended = np.concatenate([np.reshape(before, (-1, 3)), points, np.reshape(after, (-1, 3))])
    points = ndimage.gaussian_filter1d(extended, sigma, axis=0, mode="nearest")[reach:reach + len(points)]
    np.testing.assert_allclose(centerline.points_mm, points, rtol=0, atol=1e-9)
    arc = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    np.testing.assert_allclose(centerline.arc_mm, arc, rtol=0, atol=1e-9)


def _whole_field_near(mask, zooms, distance_mm):
    return ndimage.distance_transform_edt(mask == 0, sampling=zooms) <= distance_mm


@pytest.mark.parametrize("zooms", [(0.8, 0.8, 0.8), (0.5, 0.7, 2.5), (1.0, 0.4, 0.9)])
@pytest.mark.parametrize("distance_mm", [0.0, 0.5, 3.0, 7.9, 12.0, 100.0])
def test_distances_over_the_cords_box_equal_the_whole_fields(zooms, distance_mm):
    """A cord off-centre in a larger field, labels everywhere: any voxel the box left out would show."""
    rng = np.random.default_rng(11)
    shape = (40, 36, 30)
    cord = np.zeros(shape, np.uint8)
    cord[3:12, 20:27, 5:24] = _tube((9, 7, 19), 2, seed=5, gaps=False)
    labels = rng.integers(0, 10, shape).astype(np.uint8)
    expected = np.where(_whole_field_near(cord, zooms, distance_mm), labels, 0)
    out = postprocess.keep_near_cord(labels, cord, zooms, distance_mm)
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == labels.dtype
    box, near = postprocess.near_mask(cord, zooms, distance_mm)
    whole = np.zeros(shape, bool)
    whole[box] = near
    np.testing.assert_array_equal(whole, _whole_field_near(cord, zooms, distance_mm))


def test_distances_to_an_empty_mask():
    assert postprocess.near_mask(np.zeros((5, 5, 5)), (1, 1, 1), 3.0) is None
    with pytest.raises(ValueError, match="empty"):
        postprocess.keep_near_cord(np.ones((5, 5, 5), np.uint8), np.zeros((5, 5, 5)), (1, 1, 1), 3.0)


def _scattered_rootlets(shape, seed):
    rng = np.random.default_rng(seed)
    rootlets = np.zeros(shape, np.int64)
    for _ in range(60):
        corner = rng.integers(0, np.array(shape) - 3)
        rootlets[tuple(slice(c, c + s) for c, s in zip(corner, rng.integers(1, 4, 3)))] = rng.integers(2, 10)
    return rootlets


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("dilate_mm", [1.0, 3.0])
def test_extents_equal_the_whole_field_definition(storage, dilate_mm):
    """Published extents worked out over the whole field: the cord dilated by a distance map of the whole image,
    intersected with the rootlets; each level's highest and lowest RPI slice."""
    codes, zooms = STORAGES[storage]
    shape = (24, 30, 40) if storage != "PSR" else (30, 40, 24)
    affine = _affine(codes, zooms, shape)
    frame = AxialFrame.of(affine, shape)
    cord = _tube(shape, frame.axis, seed=8)
    rootlets = _scattered_rootlets(shape, seed=9)
    touching = np.where(_whole_field_near(cord, zooms, dilate_mm), rootlets, 0)
    expected = []
    for level in np.unique(touching[touching > 0]):
        voxel = np.argwhere(touching == level)[:, frame.axis]
        rpi = voxel if frame.points_superior else shape[frame.axis] - 1 - voxel
        expected.append(levels.Extent(int(level), int(rpi.max()), int(rpi.min())))
    assert len(expected) >= 3, "the example must have several levels touching the cord"
    assert levels.rootlet_extents(rootlets, cord, zooms, frame, dilate_mm) == expected


@pytest.mark.parametrize("storage", ["LAS", "PSR", "RAI"])
def test_level_map_equals_painting_slab_by_slab(storage):
    codes, zooms = STORAGES[storage]
    shape = (24, 30, 40) if storage != "PSR" else (30, 40, 24)
    affine = _affine(codes, zooms, shape)
    frame = AxialFrame.of(affine, shape)
    cord = _tube(shape, frame.axis, seed=4).astype(np.uint8)
    n = shape[frame.axis]
    extents = [levels.Extent(2, n - 4, n - 12), levels.Extent(3, n - 10, n - 20),   # overlapping
               levels.Extent(5, n - 25, n - 26), levels.Extent(4, n - 21, n - 24)]  # out of order in the list
    expected = np.zeros(shape, np.uint8)
    for extent in sorted(extents, key=lambda e: e.level):  # caudal (higher) levels painted last win
        for rpi in range(extent.caudal, extent.rostral + 1):
            voxel = rpi if frame.points_superior else n - 1 - rpi
            where = [slice(None)] * 3
            where[frame.axis] = voxel
            expected[tuple(where)] = np.where(cord[tuple(where)] > 0, extent.level, expected[tuple(where)])
    np.testing.assert_array_equal(levels.level_map(cord, extents, frame), expected)


def test_disc_points_in_one_pass_equal_each_points_own():
    codes, zooms = STORAGES["PSR"]
    shape = (30, 40, 24)
    affine = _affine(codes, zooms, shape)
    rng = np.random.default_rng(2)
    discs = np.zeros(shape, np.uint8)
    for value in (3, 4, 5, 7):
        for _ in range(rng.integers(1, 4)):
            discs[tuple(rng.integers(0, shape))] = value
    points = levels.points_of(discs, affine)
    assert sorted(points) == [3, 4, 5, 7]
    for value, (world, rpi) in points.items():
        ijk = np.argwhere(discs == value).mean(axis=0)
        np.testing.assert_array_equal(world, affine[:3, :3] @ ijk + affine[:3, 3])
        assert rpi == round(shape[1] - 1 - ijk[1])  # PSR: axis 1 points inferior
        one_world, one_rpi = levels.point_of(discs, affine, value)
        np.testing.assert_array_equal(world, one_world)
        assert rpi == one_rpi
