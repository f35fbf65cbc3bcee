"""Per-level post-processing and sct_maths-style dilation, on volumes small enough to check by hand."""

import nibabel as nib
import numpy as np
import pytest
from skimage import morphology
from skimage.filters import rank

from sct_rootlets import postprocess as pp
from sct_rootlets.cli import rootlets_dilate


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
    # x^2/4 + y^2 + z^2 <= 1: the 5 voxels of the x axis, plus (0, +/-1, 0) and (0, 0, +/-1)
    ellipsoid = pp.dilation_footprint((2, 1, 1), "ball")
    assert ellipsoid.shape == (5, 3, 3) and ellipsoid.sum() == 9 and ellipsoid[:, 1, 1].all()


@pytest.mark.parametrize("size, box", [((2, 2, 0), (5, 5, 1)), ((1, 0, 2), (3, 1, 5)), ((2, 1, 0), (5, 3, 1)),
                                       ((3, 0, 0), (7, 1, 1)), ((0, 0, 0), (1, 1, 1))])
def test_zero_ball_radius_gives_a_full_box_as_sct_maths(size, box):
    np.testing.assert_array_equal(pp.dilation_footprint(size, "ball"), np.ones(box, bool))


def test_two_value_sizes_of_2d_shapes_follow_the_remaining_axes():
    # -shape square -dilate 1x4 -dim 0: a 1x4 rectangle in the y-z plane
    np.testing.assert_array_equal(pp.dilation_footprint((1, 4), "square", dim=0), np.ones((1, 1, 4), bool))
    # -shape disk -dilate 2x1 -dim 1: radius 2 along x, 1 along z (x^2/4 + z^2 <= 1)
    expected = np.array([[0, 1, 0], [0, 1, 0], [1, 1, 1], [0, 1, 0], [0, 1, 0]], bool)[:, np.newaxis, :]
    np.testing.assert_array_equal(pp.dilation_footprint((2, 1), "disk", dim=1), expected)
    np.testing.assert_array_equal(pp.dilation_footprint((2, 0), "disk", dim=2), np.ones((5, 1, 1), bool))


@pytest.mark.parametrize("size, shape, dim", [((2, 2), "ball", None), ((1, 2), "cube", None),
                                              ((1, 2, 3), "disk", 2), ((1, 2, 3), "square", 0),
                                              ((2,), "disk", None), ((2,), "ball", 2), ((0,), "cube", None)])
def test_sizes_sct_maths_refuses(size, shape, dim):
    with pytest.raises(ValueError):
        pp.dilation_footprint(size, shape, dim)


def _extent(array: np.ndarray) -> list:
    """Per axis, the indices where the array is non-zero."""
    return [np.flatnonzero(array.any(axis=tuple(a for a in range(3) if a != axis))).tolist() for axis in range(3)]


@pytest.mark.parametrize("size, shape, dim, uint8_extent, int16_extent", [
    ((2,), "cube", None, [[4, 5]] * 3, [[3, 4]] * 3),
    ((2, 3, 4), "cube", None, [[4, 5], [3, 4, 5], [3, 4, 5, 6]], [[3, 4], [3, 4, 5], [2, 3, 4, 5]]),
    ((2,), "square", 1, [[4, 5], [4], [4, 5]], [[3, 4], [4], [3, 4]]),
    ((3,), "cube", None, [[3, 4, 5]] * 3, [[3, 4, 5]] * 3),
])
def test_even_edges_are_centred_as_sct_maths_for_the_stored_type(size, shape, dim, uint8_extent, int16_extent):
    # sct_maths: uint8/uint16 maps go through a rank filter (even edge reaches one voxel higher), others do not
    labels = np.zeros((9, 9, 9), np.uint8)
    labels[4, 4, 4] = 7
    dilated = pp.dilate(labels, size, shape, dim)
    assert dilated.dtype == np.uint8 and set(np.unique(dilated)) == {0, 7}
    assert _extent(dilated) == uint8_extent
    assert _extent(pp.dilate(labels.astype(np.int16), size, shape, dim)) == int16_extent


@pytest.mark.parametrize("size, shape, dim", [((2,), "cube", None), ((2, 3, 4), "cube", None),
                                              ((2,), "square", 1), ((1, 4), "square", 0),
                                              ((2, 2, 0), "ball", None), ((2, 1), "disk", 1)])
def test_dilation_equals_the_scikit_image_calls_sct_maths_makes(size, shape, dim):
    labels = np.zeros((8, 9, 10), np.uint8)
    rng = np.random.default_rng(0)
    labels[tuple(rng.integers(0, 8, (3, 12)))] = rng.integers(2, 10, 12)  # several levels, some on the border
    footprint = pp.dilation_footprint(size, shape, dim)
    np.testing.assert_array_equal(pp.dilate(labels, size, shape, dim), rank.maximum(labels, footprint=footprint))
    as_int16 = labels.astype(np.int16)
    np.testing.assert_array_equal(pp.dilate(as_int16, size, shape, dim),
                                  morphology.dilation(as_int16, footprint=footprint))


@pytest.mark.parametrize("text, size", [("3", (3,)), ("1x4", (1, 4)), ("2x2x0", (2, 2, 0))])
def test_parse_dilation_size(text, size):
    assert pp.parse_dilation_size(text) == size


@pytest.mark.parametrize("text", ["", "2x", "1x2x3x4", "-1", "1.5", "axbxc"])
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


@pytest.mark.parametrize("stored, extent", [(np.uint8, [4, 5]), (np.int16, [3, 4])])
def test_dilate_command_centres_even_edges_by_the_stored_type(stored, extent, tmp_path):
    labels = np.zeros((9, 9, 9), stored)
    labels[4, 4, 4] = 6
    nib.save(nib.Nifti1Image(labels, np.eye(4)), tmp_path / "map.nii.gz")
    assert rootlets_dilate.main(["-i", str(tmp_path / "map.nii.gz"), "-dilate", "2", "-shape", "cube", "-v", "0"]) == 0
    dilated = np.asanyarray(nib.load(tmp_path / "map_dil.nii.gz").dataobj)
    assert _extent(dilated) == [extent] * 3 and dilated.max() == 6


@pytest.mark.parametrize("options, message", [(["-dilate", "2x2"], "ball takes 1 or 3 sizes, not 2x2"),
                                              (["-dilate", "1", "-dim", "2"], "dim applies to disk and square"),
                                              (["-dilate", "1x2x3", "-shape", "disk", "-dim", "0"],
                                               "disk takes 1 or 2 sizes")])
def test_dilate_command_refuses_what_sct_maths_refuses(options, message, tmp_path, capsys):
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.uint8), np.eye(4)), tmp_path / "map.nii.gz")
    assert rootlets_dilate.main(["-i", str(tmp_path / "map.nii.gz"), *options]) == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and message in error and not (tmp_path / "map_dil.nii.gz").exists()
