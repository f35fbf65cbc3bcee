"""Per-level post-processing and sct_maths-style dilation, on volumes small enough to check by hand."""

import numpy as np
import pytest
from skimage import morphology

from sct_rootlets import postprocess as pp


def test_small_components_are_removed_per_level_in_mm3():
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[1:3, 1:3, 1:3] = 2      # 8 voxels
    labels[6, 6, 6] = 2            # 1 voxel
    labels[1, 7, 1:4] = 3          # 3 voxels, touching only itself
    labels[8, 1, 8] = 3            # 1 voxel
    zooms = (0.5, 0.5, 2.0)        # 0.5 mm3 per voxel
    out = pp.remove_small_components(labels, zooms, min_volume_mm3=1.5)  # keeps pieces of >= 3 voxels
    expected = labels.copy()
    expected[6, 6, 6] = expected[8, 1, 8] = 0
    np.testing.assert_array_equal(out, expected)


def test_diagonal_rootlet_is_one_component():
    labels = np.zeros((6, 6, 6), np.uint8)
    for i in range(5):
        labels[i, i, i] = 4        # touches itself only through corners
    out = pp.remove_small_components(labels, (1, 1, 1), min_volume_mm3=5)
    np.testing.assert_array_equal(out, labels)


def test_keep_near_cord_uses_millimetres():
    labels = np.zeros((1, 1, 12), np.uint8)
    labels[0, 0, :] = 5
    cord = np.zeros_like(labels)
    cord[0, 0, 0] = 1
    out = pp.keep_near_cord(labels, cord, (1.0, 1.0, 0.5), max_distance_mm=2.0)
    np.testing.assert_array_equal(out[0, 0], [5] * 5 + [0] * 7)  # voxels 0..4 lie within 2 mm


def test_keep_level_range():
    labels = np.arange(12, dtype=np.uint8).reshape(1, 1, 12)
    np.testing.assert_array_equal(pp.keep_level_range(labels, 2, 9)[0, 0], [0, 0, 2, 3, 4, 5, 6, 7, 8, 9, 0, 0])


@pytest.mark.parametrize("flip_z", [False, True])
def test_remove_caudal_to_point_follows_world_superior(flip_z):
    labels = np.full((2, 2, 10), 7, np.uint8)
    affine = np.diag([1.0, 1.0, -1.0 if flip_z else 1.0, 1.0])  # voxel z points I when flipped
    point = (0, 0, 4)
    out = pp.remove_caudal_to_point(labels, affine, point)
    kept = out[0, 0] > 0
    expected = np.arange(10) <= 4 if flip_z else np.arange(10) >= 4
    np.testing.assert_array_equal(kept, expected)


@pytest.mark.parametrize("radius", [0, 1, 2, 3, 4])
def test_ball_and_disk_match_scikit_image(radius):
    np.testing.assert_array_equal(pp.dilation_footprint((radius,), "ball"), morphology.ball(radius))
    disk = pp.dilation_footprint((radius,), "disk", dim=2)
    assert disk.shape == (2 * radius + 1, 2 * radius + 1, 1)
    np.testing.assert_array_equal(disk[:, :, 0], morphology.disk(radius))
    assert pp.dilation_footprint((radius,), "disk", dim=0).shape == (1, 2 * radius + 1, 2 * radius + 1)


def test_cube_square_and_anisotropic_sizes():
    assert pp.dilation_footprint((3,), "cube").shape == (3, 3, 3)
    assert pp.dilation_footprint((3,), "square", dim=1).shape == (3, 1, 3)
    assert pp.dilation_footprint((3, 1, 5), "cube").shape == (3, 1, 5)
    ellipsoid = pp.dilation_footprint((2, 1, 0), "ball")
    assert ellipsoid.shape == (5, 3, 1) and ellipsoid.sum() == 7  # 5 along x at y=0, plus (0, +/-1)


@pytest.mark.parametrize("text, size", [("3", (3,)), ("2x2x0", (2, 2, 0))])
def test_parse_dilation_size(text, size):
    assert pp.parse_dilation_size(text) == size


@pytest.mark.parametrize("text", ["", "2x2", "-1", "1.5", "axbxc"])
def test_parse_dilation_size_rejects(text):
    with pytest.raises(ValueError):
        pp.parse_dilation_size(text)


def test_greyscale_dilation_keeps_levels():
    labels = np.zeros((1, 1, 9), np.uint8)
    labels[0, 0, 2], labels[0, 0, 5] = 3, 6
    out = pp.dilate(labels, (1,), "ball")
    np.testing.assert_array_equal(out[0, 0], [0, 3, 3, 3, 6, 6, 6, 0, 0])
    np.testing.assert_array_equal(pp.dilate(labels, (0,), "ball"), labels)   # radius 0 does nothing
    np.testing.assert_array_equal(pp.dilate(labels, (1,), "cube"), labels)   # edge 1 does nothing


def test_postprocessing_chain_and_requirements():
    labels = np.zeros((5, 5, 20), np.uint8)
    labels[2, 2, 2:18] = 9
    labels[2, 2, 18:] = 10
    discs = np.zeros_like(labels)
    discs[2, 2, 5] = 8
    steps = pp.PostProcessing(level_range=(2, 9), below_disc=8)
    out = steps.apply(labels, (1, 1, 1), np.eye(4), discs=discs)
    np.testing.assert_array_equal(out[2, 2], [0, 0, 0, 0, 0] + [9] * 13 + [0, 0])
    assert steps.as_dict() == {"level_range": (2, 9), "below_disc": 8}
    with pytest.raises(ValueError, match="disc label 8 is not in the disc labels"):
        steps.apply(labels, (1, 1, 1), np.eye(4), discs=np.zeros_like(labels))
