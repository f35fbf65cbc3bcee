"""Fast CPU inference: the OpenVINO engine (labels equal to PyTorch's up to rounding, conversion cached beside the
weights) and prediction restricted to a region around the cord: "fast" (exact when the region is the whole image;
never a label outside the region otherwise) and "exact" (nnU-Net's tiles that overlap the region: labels inside it
equal the whole-image prediction's, bit for bit). Speed is measured in bench/, never here."""

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch

from conftest import ras_image, stored_as, synthetic_t2w
from sct_rootlets.inference.engines import select_engine
from sct_rootlets.errors import ModelError
from sct_rootlets.io.image import load_input_image
from sct_rootlets.inference.session import InferenceSession, region_box, tile_shape
from sct_rootlets.store.resolve import resolve_model
from sct_rootlets.io.outputs import sidecar_path
from sct_rootlets.segment import Anatomy, segment_rootlets
from test_inference import STORED_AS


@pytest.fixture
def model_copy(tiny_model_root, tmp_path):
    """A private copy of the tiny model: the engine writes its conversion beside the weights."""
    return shutil.copytree(tiny_model_root, tmp_path / "model")


def _image(tmp_path, orientation="LPI", shape=(40, 48, 24)):
    path = tmp_path / f"img_{orientation}.nii.gz"
    nib.save(stored_as(ras_image(synthetic_t2w(shape)), STORED_AS[orientation]), path)
    return load_input_image(path)


def test_openvino_labels_match_torch_and_conversion_is_cached_beside_weights(model_copy, tmp_path):
    image = _image(tmp_path)
    model = resolve_model(str(model_copy))
    reference = InferenceSession(model, device="cpu", threads=2).predict(image)
    fast = InferenceSession(model, device="cpu", threads=2, engine="openvino")
    labels = fast.predict(image)
    assert labels.shape == reference.shape and labels.dtype == np.uint8
    assert np.mean(labels == reference) >= 0.999
    assert fast.options["engine"] == "openvino"
    exports = {path.parent.name: path for path in model_copy.rglob("*.onnx")}
    assert sorted(exports) == ["fold_0", "fold_1"]
    for fold, checkpoint in model.folder.checkpoints.items():
        assert exports[f"fold_{fold}"].name == f"checkpoint_final.{model.file_hashes[checkpoint][:16]}.onnx"
    stamps = {path: path.stat().st_mtime_ns for path in exports.values()}
    np.testing.assert_array_equal(InferenceSession(model, device="cpu", engine="openvino").predict(image), labels)
    assert {path: path.stat().st_mtime_ns for path in exports.values()} == stamps, "the cache must be reused"


def test_damaged_engine_cache_is_named_in_the_error(model_copy):
    model = resolve_model(str(model_copy))
    checkpoint = model.folder.checkpoints["0"]
    (checkpoint.parent / f"checkpoint_final.{model.file_hashes[checkpoint][:16]}.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelError, match=r"OpenVINO cannot read .*fold_0.*delete it"):
        InferenceSession(model, device="cpu", engine="openvino")


def test_onnx_export_runs_on_a_torch_without_the_dynamo_argument(monkeypatch, tmp_path):
    """SCT's torch<2.3 has only the TorchScript exporter and no `dynamo` argument to choose it: none is passed."""
    from sct_rootlets.inference.engines import export_onnx

    exported = []

    def torch_2_2_export(model, args, f, export_params=True, verbose=False, training=None, input_names=None,
                         output_names=None, operator_export_type=None, opset_version=None, do_constant_folding=True,
                         dynamic_axes=None, keep_initializers_as_inputs=None, custom_opsets=None,
                         export_modules_as_functions=False, autograd_inlining=True):
        exported.append((tuple(args.shape), input_names, opset_version))
        f.write(b"onnx")

    monkeypatch.setattr(torch.onnx, "export", torch_2_2_export)
    network = torch.nn.Conv3d(1, 2, 1)
    export_onnx(network, network.state_dict(), tmp_path / "fold.onnx", [2, 2, 1])
    assert exported == [((1, 1, 4, 4, 2), ["image"], 17)] and (tmp_path / "fold.onnx").read_bytes() == b"onnx"


def test_engine_choice_is_checked():
    from sct_rootlets.inference.engines import native_bf16_cpu

    cpu = torch.device("cpu")
    assert select_engine("auto", cpu, "fast") == ("openvino-bf16" if native_bf16_cpu() else "openvino")
    assert select_engine("auto", cpu, "exact") == select_engine("auto", cpu, "whole") == "torch"
    assert select_engine("auto", torch.device("cuda"), "fast") == "torch"
    with pytest.raises(ModelError, match="Unknown engine 'tensorrt'"):
        select_engine("tensorrt", cpu)
    with pytest.raises(ModelError, match="runs on the CPU"):
        select_engine("openvino", torch.device("cuda"))


def test_one_tile_covers_a_region_up_to_one_and_a_half_patches_along_an_axis():
    strides = np.array([32, 32, 8])
    assert tile_shape((224, 224, 48), (320, 60, 64), strides) == (320, 64, 64)
    assert tile_shape((224, 224, 48), (10, 340, 73), strides) == (32, 224, 48)


def test_region_box_widens_by_the_margin_in_millimetres():
    mask = np.zeros((50, 50, 50), bool)
    mask[20:25, 30, 10] = True
    box = region_box(mask, (0.5, 1.0, 2.0), margin_mm=4.0)
    assert box == (slice(12, 33), slice(26, 35), slice(8, 13))
    with pytest.raises(ModelError, match="empty"):
        region_box(np.zeros((4, 4, 4), bool), (1, 1, 1), 1.0)


def test_region_covering_the_image_gives_exactly_the_full_prediction(tiny_model_root, tmp_path):
    image = _image(tmp_path, "PSR", shape=(56, 56, 28))  # over 1.5 patches along every axis: nnU-Net's tiles
    cord = np.zeros(image.data.shape, np.uint8)
    cord[tuple(s // 2 for s in cord.shape)] = 1
    model = resolve_model(str(tiny_model_root))
    full = InferenceSession(model, device="cpu").predict(image)
    session = InferenceSession(model, device="cpu", region="fast", roi_margin_mm=100.0)
    np.testing.assert_array_equal(session.predict(image, cord), full)
    assert session.options_for(cord)["roi_margin_mm"] == 100.0 and session.options_for(None)["roi_margin_mm"] is None
    assert session.options_for(cord)["region"] == "fast" and session.options_for(None)["region"] == "whole"


@pytest.mark.parametrize("engine", ["torch", "openvino"])
def test_an_image_prepared_while_the_cord_is_computed_gives_the_same_labels(model_copy, tmp_path, engine):
    """`prepare` (preprocessing run while the cord model works) then `predict` equals `predict` alone, on an
    image the model resamples; a prepared image is not used for another image."""
    path = tmp_path / "anisotropic.nii.gz"
    nib.save(stored_as(ras_image(synthetic_t2w((48, 40, 20)), zooms=(0.6, 0.9, 1.1)), STORED_AS["LPI"]), path)
    image = load_input_image(path)
    cord = np.zeros(image.data.shape, np.uint8)
    cord[20:28, 16:24, :] = 1
    session = InferenceSession(resolve_model(str(model_copy)), device="cpu", engine=engine, region="fast")
    alone = session.predict(image, cord)
    np.testing.assert_array_equal(session.predict(image, cord, session.prepare(image)), alone)
    assert alone.any()
    with pytest.raises(ValueError, match="not the image"):
        session.predict(image, cord, session.prepare(_image(tmp_path, "PSR", shape=(48, 40, 20))))


def _count_tiles(session, monkeypatch) -> list:
    """Record the tiles the network runs on (one call of nnU-Net's per-tile prediction each)."""
    tiles = []
    predictor = session.predictor
    run_tile = predictor._internal_maybe_mirror_and_predict

    def counted(x):
        tiles.append(tuple(x.shape[2:]))
        return run_tile(x)

    monkeypatch.setattr(predictor, "_internal_maybe_mirror_and_predict", counted)
    return tiles


@pytest.mark.parametrize("orientation,zooms", [("PSR", (0.8, 0.8, 0.8)), ("LPI", (0.6, 0.9, 1.1))])
def test_exact_region_equals_the_whole_image_prediction_inside_the_region(tiny_model_root, tmp_path, orientation,
                                                                          zooms, monkeypatch):
    """Inside the widened box every label equals the stock whole-image one, with and without resampling to the
    model's spacing, while the tiles that miss the box are skipped."""
    path = tmp_path / "img.nii.gz"
    nib.save(stored_as(ras_image(synthetic_t2w((72, 80, 40)), zooms=zooms), STORED_AS[orientation]), path)
    image = load_input_image(path)
    ras_cord = np.zeros((72, 80, 40), np.uint8)
    ras_cord[30:34, 50:54, 10:30] = 1
    cord = np.asanyarray(stored_as(nib.Nifti1Image(ras_cord, ras_image().affine), STORED_AS[orientation]).dataobj)
    model = resolve_model(str(tiny_model_root))
    whole = InferenceSession(model, device="cpu")
    whole_tiles = _count_tiles(whole, monkeypatch)
    stock = whole.predict(image)
    exact = InferenceSession(model, device="cpu", region="exact", roi_margin_mm=3.0)
    exact_tiles = _count_tiles(exact, monkeypatch)
    labels = exact.predict(image, cord)
    inside = np.zeros(labels.shape, bool)
    inside[region_box(cord, image.zooms, 3.0)] = True
    assert stock[inside].any(), "the comparison must hold labels"
    np.testing.assert_array_equal(labels[inside], stock[inside])
    assert not labels[~inside].any(), "background outside the region"
    assert 0 < len(exact_tiles) < len(whole_tiles), "tiles missing the region are skipped"
    assert set(exact_tiles) == set(whole_tiles), "exact mode keeps nnU-Net's tile size"
    assert exact.options_for(cord)["region"] == "exact" and exact.options_for(cord)["roi_margin_mm"] == 3.0


@pytest.mark.parametrize("orientation", ["LPI", "PSR"])
def test_no_label_outside_the_region(tiny_model_root, tmp_path, orientation):
    image = _image(tmp_path, orientation, shape=(48, 64, 40))
    ras_cord = np.zeros((48, 64, 40), np.uint8)
    ras_cord[20:26, 30:36, :] = 1  # a cord along the whole superior-inferior axis
    cord_nifti = stored_as(nib.Nifti1Image(ras_cord, ras_image().affine), STORED_AS[orientation])
    cord = np.asanyarray(cord_nifti.dataobj)
    session = InferenceSession(resolve_model(str(tiny_model_root)), device="cpu", region="fast", roi_margin_mm=4.0)
    labels = session.predict(image, cord)
    inside = np.zeros(labels.shape, bool)
    inside[region_box(cord, image.zooms, 4.0)] = True
    assert labels[inside].any(), "the network ran inside the region"
    assert not labels[~inside].any(), "nothing may be labelled outside the region"


def test_region_engine_and_cord_mask_are_recorded_in_the_sidecar(model_copy, tmp_path):
    image_path = tmp_path / "sub-01_T2w.nii.gz"
    nib.save(ras_image(), image_path)
    cord = np.zeros(ras_image().shape, np.uint8)
    cord[14:18, 27:31, :] = 1
    cord_path = tmp_path / "sub-01_T2w_seg.nii.gz"
    nib.save(nib.Nifti1Image(cord, ras_image().affine), cord_path)
    written = segment_rootlets([image_path], model=str(model_copy), device="cpu", engine="openvino",
                               region="exact", roi_margin_mm=5.0, anatomy=Anatomy(cord=cord_path))
    options = json.loads(sidecar_path(written[0]).read_text())["Options"]
    assert options["engine"] == "openvino" and options["region"] == "exact" and options["roi_margin_mm"] == 5.0
    assert options["cord_mask"] == {"Computed": False, "File": str(cord_path)}
