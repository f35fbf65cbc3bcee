"""A computed cord is checked before it is used (README, "Contrasts": never silently wrong).

Real cords (the manual masks at hand, in every contrast, and the PAM50 template's) must pass; wrong "cords" such
as a T2w-trained model returns on T1w (a few voxels, a thin broken strand) must not, and a run that computed one
must warn once, predict the whole image and say why in its sidecar. A mask given with -s is never checked.
"""

import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from conftest import SHARED_DATA, ras_image, synthetic_t2w
from test_batch import make_dataset

from sct_rootlets.anatomy import cord as cord_module
from sct_rootlets.anatomy.cord import CordNotFoundError
from sct_rootlets.anatomy.plausibility import implausibility, measure_cord
from sct_rootlets.anatomy.postprocess import PostProcessing
from sct_rootlets.segment import Anatomy, segment_rootlets

MANUAL_MASKS = sorted(SHARED_DATA.glob("real_bids/derivatives/labels/*/anat/*_label-SC_seg.nii.gz")) + sorted(
    SHARED_DATA.glob("real_contrasts/derivatives/labels/*/anat/*_label-SC_seg.nii.gz")) + [
    SHARED_DATA / "real" / "sub-fakelesion_T2w_label-SC_seg.nii.gz", SHARED_DATA / "pam50" / "PAM50_cord.nii.gz"]


def _needs_shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} (the shared real scans) is absent")


def test_every_real_cord_at_hand_is_plausible():
    """Manual masks in T2w, T1w, T2*w, MT and the PAM50 cord: adult cords by construction."""
    _needs_shared_data()
    assert len(MANUAL_MASKS) >= 11
    for path in MANUAL_MASKS:
        image = nib.load(path)
        measures = measure_cord(np.asanyarray(image.dataobj) > 0, image.affine)
        assert implausibility(measures) is None, (path.name, measures)


def _grid(shape=(64, 64, 200)):
    """A 1 mm RAS grid: axis 2 is superior-inferior, 200 mm long."""
    return np.zeros(shape, bool), np.diag([1.0, 1.0, 1.0, 1.0])


def _cylinder(mask, radius, z_slices):
    x, y = np.meshgrid(np.arange(mask.shape[0]), np.arange(mask.shape[1]), indexing="ij")
    disk = (x - 32) ** 2 + (y - 32) ** 2 <= radius ** 2
    for z in z_slices:
        mask[:, :, z] = disk
    return mask


def test_measures_of_a_cylinder_are_its_area_and_length():
    mask, affine = _grid()
    mask = _cylinder(mask, 5, range(20, 180))  # 81 voxels of 1 mm² per slice (a digital disk of radius 5)
    measures = measure_cord(mask, affine)
    assert measures.median_area_mm2 == pytest.approx(81.0)
    assert measures.extent_mm == pytest.approx(160.0) and measures.field_of_view_mm == pytest.approx(200.0)
    assert measures.continuity == pytest.approx(1.0)
    assert implausibility(measures) is None


@pytest.mark.parametrize("wrong, reason", [
    ("blob", "spans 2 mm of the 200 mm field of view"),           # 50 voxels: 5 x 5 x 2
    ("strand", "median cross-section is 5 mm²"),                  # a thin line along the whole field of view
    ("broken", "missing from 66% of the slices between its ends"),  # slices 10, 13 .. 187: 60 of 178
    ("slab", "median cross-section is 3721 mm²"),               # everything: 61 x 61 voxels per slice
])
def test_wrong_cords_are_implausible_and_say_why(wrong, reason):
    mask, affine = _grid()
    if wrong == "blob":
        mask[30:35, 30:35, 100:102] = True
    elif wrong == "strand":
        mask[30:35, 32, 10:190] = True
    elif wrong == "broken":
        mask = _cylinder(mask, 5, range(10, 190, 3))
    else:
        mask[2:63, 2:63, :] = True
    assert reason in implausibility(measure_cord(mask, affine))


# --- a run that computed an implausible cord --------------------------------------------------------------------

@pytest.fixture
def image_path(tmp_path) -> Path:
    path = tmp_path / "data" / "sub-01_T2w.nii.gz"
    path.parent.mkdir(parents=True)
    nib.save(ras_image(synthetic_t2w()), path)
    return path


def _blob(shape) -> np.ndarray:
    """50 voxels: what the T2w-trained cord model found on a real T1w scan looks like to a run."""
    mask = np.zeros(shape, np.uint8)
    x, y, z = (n // 2 for n in shape)
    mask[x - 2:x + 3, y - 2:y + 3, z:z + 2] = 1  # 5 x 5 x 2 voxels
    return mask


@pytest.fixture
def cord_model_finds_a_blob(monkeypatch):
    """The cord model's answer replaced by a 50-voxel blob (the model itself is loaded as in a real run)."""
    monkeypatch.setattr(cord_module.CordSegmenter, "segment", lambda self, image: _blob(image.data.shape))


def _run(image_path, out, model, **options):
    segment_rootlets([image_path], output=out, model=str(model), device="cpu", engine="torch", **options)
    return np.asanyarray(nib.load(out).dataobj), json.loads(out.with_name("out.json").read_text())


def test_an_implausible_computed_cord_warns_once_and_predicts_the_whole_image(
        cord_model_finds_a_blob, image_path, tiny_model_root, tmp_path, caplog):
    whole, _ = _run(image_path, tmp_path / "whole" / "out.nii.gz", tiny_model_root, region="whole")
    with caplog.at_level(logging.WARNING):
        fast, sidecar = _run(image_path, tmp_path / "fast" / "out.nii.gz", tiny_model_root, region="fast")
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno >= logging.WARNING and "plausible" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"The cord computed in {image_path} is not plausible (")
    assert "the whole image is predicted" in warnings[0]
    assert len(np.unique(whole)) >= 3, "a varied prediction, so a cropped one would differ"
    np.testing.assert_array_equal(fast, whole)
    cord_mask = sidecar["Options"]["cord_mask"]
    assert cord_mask["Computed"] is True and cord_mask["Plausible"] is False
    assert "median cross-section is 16 mm²" in cord_mask["Reason"]  # 5 x 5 voxels of 0.8 mm
    assert sidecar["Options"]["region"] == "whole"


def test_options_that_need_the_cord_stop_on_an_implausible_one(cord_model_finds_a_blob, image_path,
                                                             tiny_model_root, tmp_path):
    out = tmp_path / "out" / "out.nii.gz"
    expected = r"is not plausible \(its median cross-section is 16 mm², .*\); give a cord mask with -s\.$"
    with pytest.raises(CordNotFoundError, match=expected):
        segment_rootlets([image_path], output=out, model=str(tiny_model_root), device="cpu", engine="torch",
                         postprocessing=PostProcessing(max_distance_mm=5.0))
    assert not out.exists()


def test_a_given_cord_mask_is_never_second_guessed(image_path, tiny_model_root, tmp_path, caplog):
    given = tmp_path / "blob_seg.nii.gz"
    nib.save(nib.Nifti1Image(_blob(nib.load(image_path).shape), nib.load(image_path).affine), given)
    with caplog.at_level(logging.WARNING):
        _, sidecar = _run(image_path, tmp_path / "given" / "out.nii.gz", tiny_model_root, region="fast",
                          anatomy=Anatomy(cord=given))
    assert not [r for r in caplog.records if "plausible" in r.getMessage()]
    assert sidecar["Options"]["cord_mask"] == {"Computed": False, "File": str(given)}
    assert sidecar["Options"]["region"] == "fast"


def test_a_batch_reports_an_implausible_cord_in_its_summary_and_qc(cord_model_finds_a_blob, tiny_model_root,
                                                                  tmp_path):
    """README (Whole datasets): the summary says which cord was used per image, and QC shows why it was not."""
    from sct_rootlets.cli.rootlets_batch import main

    dataset = make_dataset(tmp_path)
    out = tmp_path / "out"
    assert main(["-path-data", str(dataset), "-path-output", str(out), "-model", str(tiny_model_root), "-device",
                 "cpu", "-include", "sub-01 sub-04", "-v", "0"]) == 0
    summary = pd.read_csv(out / "results/rootlets_summary.csv", keep_default_na=False)
    by_subject = summary.groupby("subject")[["cord_mask", "cord_reason"]].agg(set)
    assert by_subject.loc["sub-01", "cord_mask"] == {"given"}  # its manual mask in derivatives/labels
    assert by_subject.loc["sub-04", "cord_mask"] == {"not plausible"}
    assert by_subject.loc["sub-04", "cord_reason"] == {"its median cross-section is 16 mm², outside the adult "
                                                       "cord's 20-150 mm²"}
    script = (out / "qc/js/rootlets_extras.js").read_text()
    extras = json.loads(script[script.index("{"):script.rindex("}") + 1])  # what our QC viewer reads
    notes = [entry["note"] for entry in extras.values() if "note" in entry]
    assert notes == ["Computed cord not plausible (its median cross-section is 16 mm², outside the adult cord's "
                     "20-150 mm²): not used, the whole image was predicted."] * 2  # axial and sagittal of sub-04


@pytest.mark.parametrize("command", ["sct_rootlets_cord", "sct_rootlets_levels"])
def test_commands_that_write_a_computed_cord_refuse_an_implausible_one(command, cord_model_finds_a_blob,
                                                                     image_path, tmp_path, capsys):
    """sct_rootlets_cord never writes a wrong cord, and sct_rootlets_levels -img never bases levels on one: one
    sentence, exit 1, nothing written."""
    from sct_rootlets.cli import rootlets_cord, rootlets_levels

    out = tmp_path / "out"
    out.mkdir()
    if command == "sct_rootlets_cord":
        code = rootlets_cord.main(["-i", str(image_path), "-o", str(out / "seg.nii.gz"), "-v", "0"])
    else:
        rootlets = out / "rootlets.nii.gz"
        nib.save(nib.Nifti1Image(_blob(nib.load(image_path).shape) * 3, nib.load(image_path).affine), rootlets)
        code = rootlets_levels.main(["-i", str(rootlets), "-img", str(image_path), "-v", "0"])
    assert code == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith(f"{command}: error: The cord computed in {image_path} is not "
                                                   f"plausible (its median cross-section is 16 mm²")
    assert sorted(p.name for p in out.iterdir()) == ([] if command == "sct_rootlets_cord" else ["rootlets.nii.gz"])
