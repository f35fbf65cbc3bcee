"""Orientation conventions and input validation as pure functions."""

import nibabel as nib
import numpy as np
import pytest

from conftest import ras_image
from sct_rootlets.errors import InputImageError
from sct_rootlets.image import (Reorientation, axcodes_to_sct_orientation, image_sct_orientation,
                                label_image_like, load_input_image, sct_orientation_to_axcodes)


@pytest.mark.parametrize("sct, axcodes", [("LPI", ("R", "A", "S")), ("RPI", ("L", "A", "S")),
                                          ("PSR", ("A", "I", "L")), ("AIL", ("P", "S", "R"))])
def test_sct_orientation_is_the_side_each_axis_comes_from(sct, axcodes):
    assert sct_orientation_to_axcodes(sct) == axcodes
    assert axcodes_to_sct_orientation(axcodes) == sct


@pytest.mark.parametrize("bad", ["LLI", "LP", "LPIX", "XYZ", ""])
def test_invalid_orientation_strings(bad):
    with pytest.raises(ValueError):
        sct_orientation_to_axcodes(bad)


def test_reorientation_round_trip_and_zooms():
    data = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    # voxel axes point to P (1 mm), S (3 mm) and L (2 mm): nibabel ('P', 'S', 'L'), SCT "AIR"
    affine = np.array([[0, 0, -2.0, 0], [-1.0, 0, 0, 0], [0, 3.0, 0, 0], [0, 0, 0, 1]])
    assert image_sct_orientation(affine) == "AIR"
    reorientation = Reorientation.between(affine, ("R", "A", "S"))
    moved = reorientation.apply(data)
    assert moved.shape == (4, 2, 3)
    assert moved[0, 0, 0] == data[1, 0, 3] and moved[3, 1, 2] == data[0, 2, 0]
    np.testing.assert_array_equal(reorientation.revert(moved), data)
    assert reorientation.apply_to_zooms((1.0, 3.0, 2.0)) == (2.0, 1.0, 3.0)


def test_label_map_keeps_the_input_grid_of_a_4d_single_volume(tmp_path):
    image = nib.Nifti1Image(np.ones((5, 6, 7, 1), np.float32), np.diag([0.5, 0.6, 0.7, 1]))
    nib.save(image, tmp_path / "a.nii.gz")
    loaded = load_input_image(tmp_path / "a.nii.gz")
    assert loaded.data.shape == (5, 6, 7)
    out = label_image_like(np.zeros((5, 6, 7)), loaded.nifti)
    assert out.shape == (5, 6, 7) and np.allclose(out.affine, image.affine)


def test_scaled_integers_are_read_as_intensities(tmp_path):
    image = ras_image()
    image.header.set_slope_inter(2.0, 10.0)
    nib.save(image, tmp_path / "scaled.nii.gz")
    loaded = load_input_image(tmp_path / "scaled.nii.gz")
    np.testing.assert_allclose(loaded.data, np.asanyarray(image.dataobj).astype(float) * 2 + 10)


def test_input_error_messages_name_the_file(tmp_path):
    with pytest.raises(InputImageError, match=str(tmp_path / "x.nii.gz")):
        load_input_image(tmp_path / "x.nii.gz")
