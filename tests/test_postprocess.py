"""Per-level post-processing and sct_maths-style dilation, on volumes small enough to check by hand."""

import itertools

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage
from skimage import morphology
from skimage.filters import rank

from sct_rootlets.anatomy import postprocess as pp
from sct_rootlets.cli import deepseg_rootlets, rootlets_dilate
from sct_rootlets.cli.segmentation_options import postprocessing_from_args


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


def _canal_example():
    """A cord voxel column at x = 0 and one label 5 mm from it (level 3), another 20 mm from it (level 6), at the
    same height (so level ordering changes nothing), in 0.5 x 1 x 1 mm voxels."""
    labels, cord = np.zeros((50, 3, 3), np.uint8), np.zeros((50, 3, 3), np.uint8)
    cord[0, 1, :] = 1
    labels[10, 1, 1], labels[40, 1, 1] = 3, 6     # 10 and 40 voxels of 0.5 mm
    return labels, cord, (0.5, 1.0, 1.0)


def test_labels_outside_the_canal_are_removed_whenever_there_is_a_cord():
    labels, cord, zooms = _canal_example()
    near_only = labels.copy()
    near_only[40, 1, 1] = 0
    assert pp.PostProcessing().canal_mm == 12.0
    np.testing.assert_array_equal(pp.PostProcessing().apply(labels, zooms, np.eye(4), cord=cord), near_only)
    # no cord at hand: skipped without error (the default never makes a cord required)
    assert not pp.PostProcessing().needs_cord
    np.testing.assert_array_equal(pp.PostProcessing().apply(labels, zooms, np.eye(4)), labels)
    np.testing.assert_array_equal(pp.PostProcessing().apply(labels, zooms, np.eye(4), cord=np.zeros_like(cord)),
                                  labels)
    for off in (0, 0.0, None):
        np.testing.assert_array_equal(pp.PostProcessing(canal_mm=off).apply(labels, zooms, np.eye(4), cord=cord),
                                      labels)
    # the user's -max-distance-mm wins over the default, wider or narrower
    np.testing.assert_array_equal(pp.PostProcessing(max_distance_mm=25).apply(labels, zooms, np.eye(4), cord=cord),
                                  labels)
    np.testing.assert_array_equal(pp.PostProcessing(max_distance_mm=4).apply(labels, zooms, np.eye(4), cord=cord),
                                  np.zeros_like(labels))
    np.testing.assert_array_equal(pp.PostProcessing(canal_mm=25).apply(labels, zooms, np.eye(4), cord=cord), labels)


def test_canal_mm_is_recorded_only_when_on_and_not_replaced():
    assert pp.PostProcessing().as_dict() == {"canal_mm": 12.0, "order_levels": True}
    assert pp.PostProcessing(canal_mm=7.5).as_dict() == {"canal_mm": 7.5, "order_levels": True}
    assert pp.PostProcessing(max_distance_mm=25).as_dict() == {"max_distance_mm": 25, "order_levels": True}
    # both steps off: the record a map had before they existed, so a resumed batch keeps such maps
    assert pp.PostProcessing(canal_mm=0, order_levels=False).as_dict() == {}
    assert pp.PostProcessing(canal_mm=None, order_levels=False).as_dict() == {}


@pytest.mark.parametrize("options, canal_mm", [([], 12.0), (["-canal-mm", "8"], 8.0), (["-canal-mm", "0"], 0.0)])
def test_canal_mm_option(options, canal_mm):
    args = deepseg_rootlets.get_parser().parse_args(["-i", "t2.nii.gz", *options])
    assert postprocessing_from_args(args).canal_mm == canal_mm


def test_canal_mm_option_refuses_negative_distances(capsys):
    with pytest.raises(SystemExit):
        deepseg_rootlets.get_parser().parse_args(["-i", "t2.nii.gz", "-canal-mm", "-1"])
    assert "not a non-negative number" in capsys.readouterr().err


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
    assert steps.as_dict() == {"level_range": (2, 9), "below_disc": 8, "canal_mm": 12.0, "order_levels": True}
    with pytest.raises(ValueError, match="disc label 8 is not in the disc labels"):
        steps.apply(labels, (1, 1, 1), np.eye(4), discs=np.zeros_like(labels))


#: Voxel axes pointing anterior, inferior and left (SCT's PSR), 0.8 x 0.5 x 1.2 mm: superior is axis 1 decreasing.
PSR_AFFINE = np.array([[0.0, 0.0, -1.2, 10.0],
                       [0.8, 0.0, 0.0, -20.0],
                       [0.0, -0.5, 0.0, 30.0],
                       [0.0, 0.0, 0.0, 1.0]])


def _column(levels_and_sizes, gap: int = 2) -> np.ndarray:
    """Boxes of 2x`size`x2 voxels down axis 1 (head to foot in PSR_AFFINE), `gap` background slices apart."""
    labels = np.zeros((2, sum(size + gap for _, size in levels_and_sizes) + gap, 2), np.uint8)
    start = gap
    for level, size in levels_and_sizes:
        labels[:, start:start + size] = level
        start += size + gap
    return labels


def _pieces(labels: np.ndarray, affine: np.ndarray) -> list:
    """(centroid superior mm, level, voxel mask) of each 26-connected piece of each level's own mask."""
    pieces = []
    for level in np.unique(labels[labels > 0]):
        components, count = ndimage.label(labels == level, structure=np.ones((3, 3, 3)))
        for number in range(1, count + 1):
            centroid = ndimage.center_of_mass(components == number)
            pieces.append((nib.affines.apply_affine(affine, centroid)[2], level, components == number))
    return pieces


def _level_centroids_superior_mm(labels: np.ndarray, affine: np.ndarray) -> list:
    """World superior coordinate of each level's centroid, levels in increasing order."""
    return [nib.affines.apply_affine(affine, ndimage.center_of_mass(labels == level))[2]
            for level in np.unique(labels[labels > 0])]


def test_psr_affine_points_axis_1_inferior():
    assert nib.aff2axcodes(PSR_AFFINE) == ("A", "I", "L")


@pytest.mark.parametrize("speck_level, new_level", [(3, 6), (8, 7)])
def test_a_small_misplaced_piece_takes_the_level_around_it(speck_level, new_level):
    # C2..C6, a 4-voxel speck between C6 and C7, then C7: only the speck changes, to C6 or C7, whichever is nearer
    labels = _column([(2, 4), (3, 4), (4, 4), (5, 4), (6, 4), (speck_level, 1), (7, 4)])
    out = pp.order_levels_rostro_caudally(labels, PSR_AFFINE)
    speck = np.zeros_like(labels, bool)
    speck[:, 32] = True      # slices 2-5 C2, 8-11 C3, ... 26-29 C6, 32 the speck, 35-38 C7
    assert set(labels[speck]) == {speck_level}
    np.testing.assert_array_equal(out, np.where(speck, new_level, labels))


def test_the_big_pieces_keep_their_level_and_the_small_one_changes():
    # a big C3 piece where it belongs and a small C3 piece below C6 (nothing below): the small one becomes C6
    labels = _column([(2, 5), (3, 6), (4, 5), (5, 5), (6, 5), (3, 2)])
    out = pp.order_levels_rostro_caudally(labels, PSR_AFFINE)
    changed = out != labels
    assert set(labels[changed]) == {3} and set(out[changed]) == {6} and np.count_nonzero(changed) == 2 * 2 * 2


@pytest.mark.parametrize("upper, lower, changed_level, new_level", [(3, 8, 5, 4), (8, 3, 4, 5)])
def test_of_two_pieces_out_of_order_the_smaller_changes(upper, lower, changed_level, new_level):
    labels = _column([(5, upper), (4, lower)])  # C5 above C4: one of them must change
    out = pp.order_levels_rostro_caudally(labels, PSR_AFFINE)
    changed = out != labels
    assert set(labels[changed]) == {changed_level} and set(out[changed]) == {new_level}
    assert np.count_nonzero(changed) == 4 * min(upper, lower)


def test_superior_comes_from_the_affine():
    labels = _column([(2, 3), (3, 3), (4, 3)])  # in order for PSR_AFFINE, reversed when axis 1 points superior
    np.testing.assert_array_equal(pp.order_levels_rostro_caudally(labels, PSR_AFFINE), labels)
    flipped = PSR_AFFINE @ np.diag([1.0, -1.0, 1.0, 1.0])
    out = pp.order_levels_rostro_caudally(labels, flipped)
    assert np.count_nonzero(out != labels) == 2 * 2 * 3 * 2  # two of the three pieces change
    centroids = _level_centroids_superior_mm(out, flipped)
    assert centroids == sorted(centroids, reverse=True)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16])
def test_an_ordered_map_is_unchanged_bit_for_bit(dtype):
    labels = _column([(2, 3), (3, 3), (4, 3), (4, 1), (6, 2), (9, 3)]).astype(dtype)
    labels[0, 17, 0] = 5          # in the one-slice C4 piece (slices 2-4 C2, 7-9 C3, 12-14 C4, 17 C4): same height
    out = pp.order_levels_rostro_caudally(labels, PSR_AFFINE)
    assert out.dtype == dtype and out.shape == labels.shape
    np.testing.assert_array_equal(out, labels)


def test_an_empty_map_and_a_single_level_are_unchanged():
    empty = np.zeros((3, 4, 5), np.uint8)
    np.testing.assert_array_equal(pp.order_levels_rostro_caudally(empty, PSR_AFFINE), empty)
    one_level = _column([(5, 2), (5, 3), (5, 1)])
    np.testing.assert_array_equal(pp.order_levels_rostro_caudally(one_level, PSR_AFFINE), one_level)


@pytest.mark.parametrize("seed", range(5))
def test_the_fewest_voxels_change(seed):
    """Against every non-decreasing choice of present levels for 7 separate pieces (at most 4**7)."""
    rng = np.random.default_rng(seed)
    levels = rng.choice([2, 3, 5, 9], size=7)
    sizes = rng.integers(1, 6, size=7)
    labels = _column(list(zip(levels, sizes)))
    out = pp.order_levels_rostro_caudally(labels, PSR_AFFINE)
    present = np.unique(levels)
    fewest = min(int(np.sum(sizes[np.array(choice) != levels]))
                 for choice in itertools.combinations_with_replacement(present, len(levels)))
    assert np.count_nonzero(out != labels) == fewest * 4
    centroids = _level_centroids_superior_mm(out, PSR_AFFINE)
    assert centroids == sorted(centroids, reverse=True)


def test_a_scattered_random_map_comes_out_in_order():
    rng = np.random.default_rng(7)
    labels = np.zeros((12, 60, 10), np.uint8)
    for _ in range(40):
        corner = rng.integers(0, (10, 57, 8))
        size = rng.integers(1, 4, size=3)
        labels[tuple(slice(c, c + s) for c, s in zip(corner, size))] = rng.integers(2, 10)
    centroids = _level_centroids_superior_mm(labels, PSR_AFFINE)
    assert centroids != sorted(centroids, reverse=True), "the input must be out of order for this test to mean much"

    out = pp.order_levels_rostro_caudally(labels, PSR_AFFINE)

    assert out.dtype == labels.dtype and out.shape == labels.shape
    np.testing.assert_array_equal(out > 0, labels > 0)
    centroids = _level_centroids_superior_mm(out, PSR_AFFINE)
    assert centroids == sorted(centroids, reverse=True)
    # every original piece has one new level, and a higher piece never has a larger one
    pieces = [(superior_mm, np.unique(out[mask])) for superior_mm, _, mask in _pieces(labels, PSR_AFFINE)]
    assert all(len(new) == 1 for _, new in pieces)
    for (high_mm, high_level), (low_mm, low_level) in itertools.permutations(pieces, 2):
        assert not (high_mm > low_mm and high_level[0] > low_level[0])


def test_postprocessing_orders_levels_by_default_and_can_be_told_not_to():
    labels = _column([(2, 4), (3, 4), (4, 4), (3, 1), (5, 4)])
    ordered = pp.order_levels_rostro_caudally(labels, PSR_AFFINE)
    assert np.any(ordered != labels)
    np.testing.assert_array_equal(pp.PostProcessing().apply(labels, (0.8, 0.5, 1.2), PSR_AFFINE), ordered)
    assert pp.PostProcessing().as_dict() == {"canal_mm": 12.0, "order_levels": True}
    off = pp.PostProcessing(order_levels=False)
    np.testing.assert_array_equal(off.apply(labels, (0.8, 0.5, 1.2), PSR_AFFINE), labels)
    assert off.as_dict() == {"canal_mm": 12.0}


def test_levels_are_ordered_after_small_pieces_are_removed_and_before_dilation():
    zooms = (0.8, 0.5, 1.2)  # 0.48 mm3 per voxel
    labels = _column([(2, 4), (3, 4), (4, 4)])
    labels[:, 12] = 2        # a 4-voxel C2 speck touching the bottom of C3: ordered first, it would join C3
    expected = labels.copy()
    expected[:, 12] = 0
    np.testing.assert_array_equal(pp.PostProcessing(min_volume_mm3=2.0).apply(labels, zooms, PSR_AFFINE), expected)

    # C5 between C2 and a bigger C4, touching: C5 becomes C4; dilated first, C5 would grow (the higher value wins
    # where levels meet) to outweigh C4, and C4 would become C5
    labels = _column([(2, 3), (5, 3), (4, 4)], gap=0)
    expected = pp.dilate(pp.order_levels_rostro_caudally(labels, PSR_AFFINE), (1,), "ball")
    assert set(expected.ravel()) == {2, 4}
    assert set(pp.order_levels_rostro_caudally(pp.dilate(labels, (1,), "ball"), PSR_AFFINE).ravel()) == {2, 5}
    np.testing.assert_array_equal(pp.PostProcessing(dilation=(1,)).apply(labels, zooms, PSR_AFFINE), expected)


@pytest.mark.parametrize("options, order_levels", [([], True), (["-order-levels", "1"], True),
                                                   (["-order-levels", "0"], False)])
def test_order_levels_option(options, order_levels):
    args = deepseg_rootlets.get_parser().parse_args(["-i", "t2.nii.gz", *options])
    assert postprocessing_from_args(args).order_levels is order_levels


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
