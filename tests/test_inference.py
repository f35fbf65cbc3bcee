"""Inference: our session gives, on the input's grid, exactly what the stock nnU-Net predictor gives with SCT's
settings, whatever orientation the image is stored in."""

import contextlib
import io
import json

import nibabel as nib
import numpy as np
import pytest
import torch
from nibabel import orientations

from conftest import SHARED_DATA, ras_image, run_cli, stored_as
from sct_rootlets.errors import ModelError
from sct_rootlets.anatomy.postprocess import PostProcessing
from sct_rootlets.segment import segment_rootlets

#: nnU-Net's own output: no post-processing, not even the level ordering every run does by default.
STOCK = PostProcessing(order_levels=False)

# nibabel axis codes for SCT's LPI, RPI and PSR (SCT names the side an axis starts from).
STORED_AS = {"LPI": ("R", "A", "S"), "RPI": ("L", "A", "S"), "PSR": ("A", "I", "L")}


def oblique(image: nib.Nifti1Image) -> nib.Nifti1Image:
    """The image tilted by 12 degrees about x and 5 about z (closest orientation still RAS)."""
    a, b = np.deg2rad(12), np.deg2rad(5)
    rot_x = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rot_z = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    affine = image.affine.copy()
    affine[:3, :3] = rot_z @ rot_x @ affine[:3, :3]
    out = nib.Nifti1Image(np.asanyarray(image.dataobj), affine)
    out.set_qform(affine, code=1)
    out.set_sform(affine, code=1)
    return out


def stock_prediction(trainer_dir, image: nib.Nifti1Image, folds=(0, 1), orientation="LPI",
                     mirroring=False) -> np.ndarray:
    """What SCT does with nnU-Net, written independently: reoriented to the model's `orientation` (SCT letters; LPI
    is nibabel's canonical RAS), (z,y,x), predict, undo."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    with contextlib.redirect_stdout(io.StringIO()):
        predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirroring,
                                    perform_everything_on_device=False, device=torch.device("cpu"),
                                    verbose=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(trainer_dir), use_folds=folds,
                                                   checkpoint_name="checkpoint_final.pth")
    axcodes = STORED_AS[orientation]
    canonical = image.as_reoriented(orientations.ornt_transform(orientations.io_orientation(image.affine),
                                                                orientations.axcodes2ornt(axcodes)))
    data = canonical.get_fdata().transpose(2, 1, 0)[np.newaxis].astype(np.float32)
    spacing = [float(z) for z in canonical.header.get_zooms()[:3]][::-1]
    seg = predictor.predict_single_npy_array(data, {"spacing": spacing}, None, None, False).transpose(2, 1, 0)
    back = orientations.ornt_transform(orientations.axcodes2ornt(axcodes),
                                       orientations.io_orientation(image.affine))
    return orientations.apply_orientation(seg, back)


@pytest.fixture(scope="module")
def base_image():
    return ras_image(zooms=(0.8, 0.6, 1.0))


@pytest.mark.parametrize("layout", ["LPI", "RPI", "PSR", "oblique"])
def test_output_equals_stock_predictor_on_input_grid(layout, base_image, tiny_trainer_dir, tiny_model_root, tmp_path):
    image = oblique(base_image) if layout == "oblique" else stored_as(base_image, STORED_AS[layout])
    path = tmp_path / f"sub-01_{layout}_T2w.nii.gz"
    nib.save(image, path)

    [out_path] = segment_rootlets([path], model=str(tiny_model_root), device="cpu", region="whole",
                                  postprocessing=STOCK)

    assert out_path == tmp_path / f"sub-01_{layout}_T2w_rootlets.nii.gz"
    out = nib.load(out_path)
    assert out.shape == image.shape
    np.testing.assert_array_equal(out.affine, nib.load(path).affine)
    assert out.get_data_dtype() == np.uint8
    assert int(out.header["qform_code"]) == 1 and int(out.header["sform_code"]) == 1
    expected = stock_prediction(tiny_trainer_dir, nib.load(path))
    labels = np.asanyarray(out.dataobj)
    assert len(np.unique(expected)) >= 5, "the reference must be varied enough to reveal a wrong orientation"
    np.testing.assert_array_equal(labels, expected)


def test_orientations_agree_with_each_other(base_image, tiny_model_root, tmp_path):
    """The same anatomy stored two ways is segmented identically once mapped back to RAS."""
    results = {}
    for layout in ("LPI", "PSR"):
        path = tmp_path / f"{layout}.nii.gz"
        nib.save(stored_as(base_image, STORED_AS[layout]), path)
        [out] = segment_rootlets([path], model=str(tiny_model_root), device="cpu", region="whole")
        results[layout] = np.asanyarray(nib.as_closest_canonical(nib.load(out)).dataobj)
    np.testing.assert_array_equal(results["LPI"], results["PSR"])


def test_several_inputs_give_distinct_outputs_and_sidecars(base_image, tiny_model_root, tmp_path):
    paths = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        paths.append(folder / "sub-01_T2w.nii.gz")
    nib.save(base_image, paths[0])
    nib.save(stored_as(base_image, STORED_AS["PSR"]), paths[1])

    written = segment_rootlets(paths, model=str(tiny_model_root), device="cpu", region="whole",
                               command_line="cmd -i a b")

    assert written == [p.parent / "sub-01_T2w_rootlets.nii.gz" for p in paths]
    sidecar = json.loads((paths[0].parent / "sub-01_T2w_rootlets.json").read_text())
    assert sidecar["GeneratedBy"][0]["Name"] == "cmd -i a b"
    assert sidecar["Options"]["folds"] == ["0", "1"] and sidecar["Options"]["tta"] is False
    assert sidecar["Options"]["step_size"] == 0.5 and sidecar["Options"]["orientation"] == "LPI"
    assert len(sidecar["Model"]["FilesSHA256"]) == 64


def test_single_fold_matches_stock_single_fold(base_image, tiny_trainer_dir, tmp_path):
    path = tmp_path / "img.nii.gz"
    nib.save(base_image, path)
    [out] = segment_rootlets([path], model=str(tiny_trainer_dir), folds=["1"], device="cpu", region="whole",
                             postprocessing=STOCK)
    np.testing.assert_array_equal(np.asanyarray(nib.load(out).dataobj),
                                  stock_prediction(tiny_trainer_dir, nib.load(path), folds=(1,)))


def test_checkpoint_best_is_used_when_final_is_absent(base_image, tmp_path):
    import tiny_model

    trainer_dir = tiny_model.build_model_folder(tmp_path / "model", folds=("0",),
                                                checkpoint_name="checkpoint_best.pth")
    path = tmp_path / "img.nii.gz"
    nib.save(base_image, path)
    [out] = segment_rootlets([path], model=str(trainer_dir), device="cpu", region="whole")
    sidecar = json.loads(out.with_name("img_rootlets.json").read_text())
    assert sidecar["Options"]["checkpoints"] == ["checkpoint_best.pth"]


def test_dataset_json_orientation_is_honoured(base_image, tmp_path):
    """A model declaring RPI (or PSR) gets the image reoriented to that orientation, as SCT does: its labels equal a
    direct prediction on the image reoriented independently (nibabel) to the declared axes and mapped back."""
    import tiny_model

    path = tmp_path / "img.nii.gz"
    nib.save(base_image, path)
    outputs = {}
    for orientation in ("LPI", "RPI", "PSR"):
        root = tmp_path / orientation
        trainer_dir = tiny_model.build_model_folder(root, folds=("0",), image_orientation=orientation)
        [out] = segment_rootlets([path], output=tmp_path / f"out_{orientation}.nii.gz", model=str(root),
                                 device="cpu", region="whole", postprocessing=STOCK)
        outputs[orientation] = np.asanyarray(nib.load(out).dataobj)
        sidecar = json.loads((tmp_path / f"out_{orientation}.json").read_text())
        assert sidecar["Options"]["orientation"] == orientation
        expected = stock_prediction(trainer_dir, nib.load(path), folds=(0,), orientation=orientation)
        np.testing.assert_array_equal(outputs[orientation], expected, err_msg=orientation)
    assert not np.array_equal(outputs["LPI"], outputs["RPI"]), "the test image must tell the orientations apart"
    assert not np.array_equal(outputs["RPI"], outputs["PSR"])


def test_missing_fold_is_a_model_error(base_image, tiny_model_root, tmp_path):
    path = tmp_path / "img.nii.gz"
    nib.save(base_image, path)
    with pytest.raises(ModelError, match="Fold\\(s\\) 3 have no checkpoint"):
        segment_rootlets([path], model=str(tiny_model_root), folds=["3"], device="cpu", region="whole")
    assert not (tmp_path / "img_rootlets.nii.gz").exists()


@pytest.mark.skipif(not (SHARED_DATA / "real" / "sub-fakelesion_T2w.nii.gz").is_file(),
                    reason="../shared/data/real/sub-fakelesion_T2w.nii.gz is not available")
def test_real_scan_end_to_end_through_cli(tiny_model_root, tmp_path, rootlets_home):
    source = SHARED_DATA / "real" / "sub-fakelesion_T2w.nii.gz"
    before = source.read_bytes()
    out = tmp_path / "sub-fakelesion_T2w_rootlets.nii.gz"

    result = run_cli("-i", source, "-o", out, "-model", tiny_model_root, "-device", "cpu", "-region", "whole",
                     "-order-levels", "0", "-v", "0", env_home=rootlets_home)

    assert result.returncode == 0, result.stderr
    assert source.read_bytes() == before
    reference, labels = nib.load(source), nib.load(out)
    assert labels.shape == reference.shape == (99, 99, 29)
    np.testing.assert_array_equal(labels.affine, reference.affine)
    for key in ("qform_code", "sform_code", "pixdim", "xyzt_units"):
        np.testing.assert_array_equal(labels.header[key], reference.header[key])
    assert labels.get_data_dtype() == np.uint8
    expected = stock_prediction(tiny_model_root / "model-spinal-rootlets-tiny-r20990101" /
                                "nnUNetTrainer__nnUNetPlans__3d_fullres", reference)
    assert len(np.unique(expected)) >= 5
    np.testing.assert_array_equal(np.asanyarray(labels.dataobj), expected)  # README: "-region whole -order-levels 0"
    sidecar = json.loads(out.with_name("sub-fakelesion_T2w_rootlets.json").read_text())
    assert sidecar["GeneratedBy"][0]["Name"].startswith("sct_deepseg_rootlets -i ")
