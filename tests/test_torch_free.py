"""A run whose network runs in OpenVINO from a cached conversion imports no torch (issue 20): the fast mode's
preprocessing, tiling and export stand in for nnU-Net's (whose modules import torch) and give the same arrays, bit
for bit; the device is chosen without torch where no GPU driver is present; the checkpoint is not read again.
A real `sct_deepseg_rootlets` runs twice (the first converts, the second runs from the cache)."""

import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch

from conftest import SHARED_DATA, ras_image, synthetic_t2w
from sct_rootlets.errors import ModelError
from sct_rootlets.inference import resampling, session as session_module
from sct_rootlets.inference.engines import OpenVinoNetwork, facts_path, read_checkpoint_facts
from sct_rootlets.inference.preprocessing import (BACKGROUND_LOGIT, OTHER_LOGIT, NetworkPlans, labels_from_logits,
                                                  preprocess)
from sct_rootlets.inference.session import (Device, InferenceSession, choose_device, gaussian_weights, pad_to_tile,
                                            sliding_window_steps)
from sct_rootlets.io.image import load_input_image
from sct_rootlets.store.resolve import resolve_model

REAL_SCAN = SHARED_DATA / "real_bids" / "sub-errsm24" / "anat" / "sub-errsm24_T2w.nii.gz"


def _managers(trainer_dir, plans_changes=None):
    """nnU-Net's own plans and configuration managers of the tiny model, and ours, from the same plans."""
    import json

    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = json.loads((trainer_dir / "plans.json").read_text())
    plans["configurations"]["3d_fullres"].update(plans_changes or {})
    dataset_json = json.loads((trainer_dir / "dataset.json").read_text())
    manager = PlansManager(plans)
    return manager, manager.get_configuration("3d_fullres"), NetworkPlans.read(plans, dataset_json, "3d_fullres")


# nnU-Net's axis order (z, y, x) and spacings: none, isotropic and anisotropic (slice by slice) resampling, with
# a zero border (crop to non-zero).
CASES = [((20, 28, 24), [0.8, 0.8, 0.8], {}), ((20, 28, 24), [0.6, 0.9, 1.1], {}),
         ((9, 30, 26), [3.0, 0.7, 0.7], {}), ((20, 28, 24), [0.6, 0.9, 1.1], {"use_mask_for_norm": [True]})]


@pytest.mark.parametrize("shape,spacing,changes", CASES)
def test_preprocessing_equals_nnunets(tiny_trainer_dir, shape, spacing, changes):
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor

    plans_manager, configuration_manager, plans = _managers(tiny_trainer_dir, changes)
    image = synthetic_t2w(shape).astype(np.float32)
    image[:2] = 0  # a zero border nnU-Net crops away
    data, _, expected = DefaultPreprocessor(verbose=False).run_case_npy(
        image[None], None, {"spacing": spacing}, plans_manager, configuration_manager, {"labels": {"background": 0}})
    ours, properties = preprocess(image[None], spacing, plans)
    assert ours.dtype == np.float32 and ours.shape == data.shape
    np.testing.assert_array_equal(ours, data)
    for key in ("shape_before_cropping", "shape_after_cropping_and_before_resampling"):
        assert tuple(properties[key]) == tuple(expected[key])
    assert [list(map(int, pair)) for pair in properties["bbox_used_for_cropping"]] == \
        [list(map(int, pair)) for pair in expected["bbox_used_for_cropping"]]


@pytest.mark.parametrize("order", [1, 3])
@pytest.mark.parametrize("shape,new_shape,spacing,new_spacing", [
    ((12, 17, 15), (19, 11, 24), [1.0, 1.0, 1.0], [0.63, 1.55, 0.625]),
    ((5, 17, 15), (15, 11, 24), [3.5, 1.0, 1.0], [1.17, 1.55, 0.625])])  # the second: slice by slice
def test_resampling_a_box_equals_nnunets_whole_resampling_there(order, shape, new_shape, spacing, new_spacing):
    from nnunetv2.preprocessing.resampling.default_resampling import resample_data_or_seg_to_shape

    data = np.random.default_rng(order).normal(size=(2, *shape)).astype(np.float16) * 7
    expected = resample_data_or_seg_to_shape(data, new_shape, spacing, new_spacing, is_seg=False, order=order,
                                             order_z=0, force_separate_z=None)
    whole = resampling.resample_to_shape(data, new_shape, spacing, new_spacing, order=order, order_z=0,
                                         force_separate_z=None)
    assert whole.dtype == expected.dtype
    np.testing.assert_array_equal(whole, expected)
    box = (slice(3, 14), slice(0, 7), slice(10, 24))
    np.testing.assert_array_equal(resampling.resample_to_shape(data, new_shape, spacing, new_spacing, order=order,
                                                               force_separate_z=None, box=box),
                                  expected[(slice(None), *box)])


def test_the_box_kernel_is_checked_against_skimage_and_used():
    """The first-use check compares the box kernel with scipy's public zoom called as skimage calls it (without
    importing skimage); that call must be skimage's resize, which nnU-Net uses."""
    from skimage.transform import resize

    generator = np.random.default_rng(3)
    image = generator.normal(size=(20, 33, 17)) * 50 + 3
    for order in (0, 1, 3):
        np.testing.assert_array_equal(resampling._scipy_resize(image, (31, 20, 9), order),
                                      resize(image, (31, 20, 9), order, mode="edge", anti_aliasing=False))
    assert resampling._zoom_box_matches_scipy()


@pytest.mark.parametrize("zooms", [(0.8, 0.8, 0.8), (0.6, 0.9, 1.1), (1.3, 0.5, 0.5)])
def test_labels_from_box_logits_equal_nnunets_export_of_whole_logits(tiny_trainer_dir, zooms):
    """Logits in a box, background elsewhere: our export (resampling only where a label can come out) gives
    nnU-Net's labels from the whole grid's logits, bit for bit."""
    from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape

    plans_manager, configuration_manager, plans = _managers(tiny_trainer_dir)
    image = synthetic_t2w((30, 36, 20)).astype(np.float32)
    image[:, :3] = 0
    spacing = list(zooms)
    data, properties = preprocess(image[None], spacing, plans)
    shape = data.shape[1:]
    box = tuple(slice(size // 4, size // 4 + max(size // 3, 2)) for size in shape)
    generator = np.random.default_rng(1)
    region_logits = generator.normal(0, 4, (plans.num_heads, *(part.stop - part.start for part in box)))
    region_logits[0] += 6  # mostly background, as in a cord's box
    region_logits = region_logits.astype(np.float16)
    whole = torch.full((plans.num_heads, *shape), OTHER_LOGIT, dtype=torch.half)
    whole[0] = BACKGROUND_LOGIT
    whole[(slice(None), *box)] = torch.from_numpy(region_logits)
    label_manager = plans_manager.get_label_manager({"labels": {"background": 0,
                                                                **{f"l{i}": i for i in range(1, 10)}}})
    expected = convert_predicted_logits_to_segmentation_with_correct_shape(
        whole, plans_manager, configuration_manager, label_manager, dict(properties))
    labels = labels_from_logits(region_logits, box, shape, properties, plans)
    assert labels.shape == expected.shape and set(np.unique(labels)) - {0}
    np.testing.assert_array_equal(labels, expected)


def test_tiling_helpers_equal_nnunets():
    from acvl_utils.cropping_and_padding.padding import pad_nd_image
    from nnunetv2.inference.sliding_window_prediction import compute_gaussian, compute_steps_for_sliding_window

    for tile in [(16, 32, 32), (20, 24, 8), (7, 9, 11)]:
        np.testing.assert_array_equal(gaussian_weights(tile), compute_gaussian(
            tile, sigma_scale=1. / 8, value_scaling_factor=10, device=torch.device("cpu")).numpy())
    for size, tile, step in [((50, 70, 33), (16, 32, 32), 0.5), ((16, 32, 32), (16, 32, 32), 0.5),
                             ((41, 99, 40), (20, 24, 8), 0.3)]:
        assert sliding_window_steps(size, tile, step) == compute_steps_for_sliding_window(size, tile, step)
    data = np.arange(2 * 5 * 9 * 40, dtype=np.float32).reshape(2, 5, 9, 40)
    padded, revert = pad_to_tile(data, (16, 8, 32))
    expected, expected_revert = pad_nd_image(torch.from_numpy(data), (16, 8, 32), "constant", {"value": 0}, True)
    np.testing.assert_array_equal(padded, expected.numpy())
    assert revert == expected_revert
    np.testing.assert_array_equal(padded[revert], data)


@pytest.mark.parametrize("tile", [(16, 32, 32), (32, 64, 64)], ids=["several tiles", "one padded tile"])
@pytest.mark.parametrize("tta", [False, True])
def test_numpy_tiling_equals_the_torch_tiling_on_the_same_openvino_network(tiny_model_root, tmp_path, tta, tile):
    """Several tiles (Gaussian weights) or one tile larger than the data, two folds and mirroring: the same
    half-precision sums as the torch code."""
    model = resolve_model(str(tiny_model_root))
    InferenceSession(model, device="cpu", engine="openvino", region="fast")  # converts
    session = InferenceSession(model, device="cpu", engine="openvino", region="fast", tta=tta)
    assert isinstance(session.network, OpenVinoNetwork) and session.parameters == session.network.fold_states
    data = np.random.default_rng(0).normal(size=(1, 24, 50, 40)).astype(np.float32)
    ours = session._tiled_logits_numpy(data, tile)
    theirs = session._tiled_logits(torch.from_numpy(data), tile).numpy()
    assert ours.dtype == np.float16
    np.testing.assert_array_equal(ours, theirs)


def test_a_cached_conversion_is_used_without_reading_the_checkpoint(tiny_model_root, tmp_path, monkeypatch):
    model = resolve_model(str(tiny_model_root))
    path = tmp_path / "img.nii.gz"
    nib.save(ras_image(synthetic_t2w((40, 48, 24))), path)
    image = load_input_image(path)
    cord = np.zeros(image.data.shape, np.uint8)
    cord[14:18, 27:31, :] = 1
    first = InferenceSession(model, device="cpu", engine="openvino", region="fast").predict(image, cord)
    for checkpoint in model.folder.checkpoints.values():
        onnx = next(checkpoint.parent.glob("*.onnx"))
        facts = read_checkpoint_facts(onnx)
        assert facts_path(onnx).is_file() and facts["configuration"] == "3d_fullres"

    def no_checkpoint(path):
        raise AssertionError(f"{path} was read again")

    monkeypatch.setattr(session_module, "load_checkpoint", no_checkpoint)
    again = InferenceSession(model, device="cpu", engine="openvino", region="fast")
    np.testing.assert_array_equal(again.predict(image, cord), first)
    monkeypatch.undo()
    # the torch engine, nnU-Net's pieces, the same box: equal up to OpenVINO's rounding
    torch_labels = InferenceSession(model, device="cpu", region="fast").predict(image, cord)
    assert np.mean(torch_labels == first) >= 0.999


def test_device_choice_asks_torch_only_where_a_gpu_may_be(monkeypatch):
    assert choose_device("cpu") == Device("cpu") and str(choose_device("CPU")) == "cpu"
    with pytest.raises(ModelError, match="Unknown device 'tpu'"):
        choose_device("tpu")
    monkeypatch.setattr(session_module, "gpu_driver_present", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert choose_device("auto") == Device("cuda") and str(choose_device("cuda:1")) == "cuda:1"
    with pytest.raises(ModelError, match="does not exist"):
        choose_device("cuda:2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_device("auto") == Device("cpu")
    with pytest.raises(ModelError, match="no CUDA GPU"):
        choose_device("cuda")
    assert session_module.select_device("cpu") == torch.device("cpu")


_RUN = ("import sys; from sct_rootlets.cli.deepseg_rootlets import main; code = main(sys.argv[1:]); "
        "print('torch imported:', 'torch' in sys.modules); sys.exit(code)")


@pytest.mark.skipif(not REAL_SCAN.is_file(), reason="../shared/data/real_bids is not available")
@pytest.mark.skipif(session_module.gpu_driver_present(), reason="with a GPU driver, -device auto asks torch")
def test_a_default_run_from_cached_conversions_imports_no_torch(tiny_model_root, tmp_path, rootlets_home):
    """`sct_deepseg_rootlets -i IMG` (cord from the bundled cord model, rootlets in the fast mode, both in
    OpenVINO): the first run converts both networks, the second runs from the cache without torch, the same
    labels voxel for voxel."""
    import os
    import shutil

    image = tmp_path / REAL_SCAN.name
    shutil.copyfile(REAL_SCAN, image)
    environment = {**os.environ, "SCT_ROOTLETS_HOME": str(rootlets_home)}
    outputs = []
    for run in ("first", "second"):
        output = tmp_path / f"{run}.nii.gz"
        result = subprocess.run([sys.executable, "-c", _RUN, "-i", str(image), "-model", str(tiny_model_root),
                                 "-o", str(output)], capture_output=True, text=True, env=environment, timeout=900)
        assert result.returncode == 0, result.stderr
        outputs.append((output, result.stdout))
    assert "torch imported: False" in outputs[1][1], outputs[1][1]
    first, second = (np.asanyarray(nib.load(path).dataobj) for path, _ in outputs)
    assert first.shape == nib.load(image).shape and first.any()
    np.testing.assert_array_equal(second, first)
