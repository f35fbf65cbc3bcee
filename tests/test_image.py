"""Orientation conventions and input validation as pure functions."""

import nibabel as nib
import numpy as np
import pytest

from conftest import ras_image
from sct_rootlets.errors import InputImageError
from sct_rootlets.io import image as image_module
from sct_rootlets.io.image import (Reorientation, axcodes_to_sct_orientation, check_resampling_memory,
                                image_sct_orientation, label_image_like, load_input_image, load_label_image,
                                sct_orientation_to_axcodes)


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
    assert reorientation.revert_zooms((2.0, 1.0, 3.0)) == (1.0, 3.0, 2.0)


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


@pytest.mark.parametrize("load", [load_input_image, load_label_image])
def test_trailing_singleton_dimensions_are_a_3d_image(load, tmp_path):
    affine = np.array([[0, 0, -2.0, 5], [-1.0, 0, 0, 6], [0, 3.0, 0, 7], [0, 0, 0, 1]])
    data = np.arange(1, 5 * 6 * 7 + 1, dtype=np.int16).reshape(5, 6, 7)
    nib.save(nib.Nifti1Image(data[..., np.newaxis, np.newaxis], affine), tmp_path / "a.nii.gz")
    loaded = load(tmp_path / "a.nii.gz")
    np.testing.assert_array_equal(loaded.data, data)
    assert loaded.zooms == (1.0, 3.0, 2.0)
    out = label_image_like(np.ones((5, 6, 7)), loaded.nifti)
    assert out.shape == (5, 6, 7) and np.allclose(out.affine, affine)


def test_non_singleton_extra_dimension_is_refused(tmp_path):
    nib.save(nib.Nifti1Image(np.ones((5, 6, 7, 1, 2), np.int16), np.eye(4)), tmp_path / "a.nii.gz")
    with pytest.raises(InputImageError, match="has 5 dimensions"):
        load_input_image(tmp_path / "a.nii.gz")


def test_a_folder_is_named_a_folder(tmp_path):
    with pytest.raises(InputImageError, match="is a folder; give a NIfTI image"):
        load_input_image(tmp_path)


def test_resampling_memory_is_predicted_on_the_model_grid(tmp_path, monkeypatch):
    # 10x10x10 voxels of 2 mm to a 1 mm model grid: 20^3 = 8000 voxels; with 3 classes
    # 4 (image) + 2 x 3 (scores) + 2 (tile count) = 12 bytes each: 96000 bytes.
    nib.save(nib.Nifti1Image(np.ones((10, 10, 10), np.float32), np.diag([2.0, 2.0, 2.0, 1])), tmp_path / "a.nii")
    image = load_input_image(tmp_path / "a.nii")
    monkeypatch.setattr(image_module, "physical_memory_bytes", lambda: 96000)
    check_resampling_memory(image, (1.0, 1.0, 1.0), n_classes=3)
    monkeypatch.setattr(image_module, "physical_memory_bytes", lambda: 95999)
    with pytest.raises(InputImageError, match=r"2x2x2 mm voxels: resampled to the model's 1x1x1 mm voxels"):
        check_resampling_memory(image, (1.0, 1.0, 1.0), n_classes=3)


def test_absurd_voxel_size_is_refused_on_any_machine(tmp_path):
    nib.save(ras_image(zooms=(1000.0, 1000.0, 1000.0)), tmp_path / "metres.nii.gz")
    with pytest.raises(InputImageError, match="GiB of memory, more than this machine's"):
        check_resampling_memory(load_input_image(tmp_path / "metres.nii.gz"), (0.8, 0.8, 0.8), n_classes=10)
    check_resampling_memory(load_input_image(tmp_path / "metres.nii.gz"), (800.0, 800.0, 800.0), n_classes=10)
