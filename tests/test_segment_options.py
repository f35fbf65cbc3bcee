"""sct_deepseg_rootlets with post-processing and spinal levels in the same run, on the real scan."""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from conftest import SHARED_DATA, run_cli

REAL = SHARED_DATA / "real"
pytestmark = pytest.mark.skipif(not (REAL / "sub-fakelesion_T2w_label-SC_seg.nii.gz").is_file(),
                                reason="../shared/data/real is not available")


def test_postprocessing_and_levels_in_one_run(tiny_model_root, tmp_path, rootlets_home):
    image, cord = REAL / "sub-fakelesion_T2w.nii.gz", REAL / "sub-fakelesion_T2w_label-SC_seg.nii.gz"
    out = tmp_path / "sub-fakelesion_T2w_rootlets.nii.gz"
    result = run_cli("-i", image, "-o", out, "-model", tiny_model_root, "-device", "cpu", "-s", cord,
                     "-keep-levels", "2:9", "-max-distance-mm", "4", "-min-size-mm3", "2", "-levels-method",
                     "gapfree", "-v", "0", env_home=rootlets_home)
    assert result.returncode == 0, result.stderr

    labels_image = nib.load(out)
    labels = np.asanyarray(labels_image.dataobj)
    cord_mask = np.asanyarray(nib.load(cord).dataobj) > 0
    zooms = labels_image.header.get_zooms()[:3]
    unfiltered = tmp_path / "unfiltered" / "out.nii.gz"
    assert run_cli("-i", image, "-o", unfiltered, "-model", tiny_model_root, "-device", "cpu", "-s", cord,
                   "-max-distance-mm", "4", "-min-size-mm3", "2", "-v", "0", env_home=rootlets_home).returncode == 0
    kept = np.asanyarray(nib.load(unfiltered).dataobj)
    assert (kept == 1).any(), "without -keep-levels this model labels level 1 here: the filter has work to do"
    assert labels.any() and not (labels == 1).any(), "-keep-levels 2:9 keeps C2..T1 only"
    assert set(np.unique(labels)) - {0} <= set(range(2, 10))
    distance_mm = ndimage.distance_transform_edt(~cord_mask, sampling=zooms)
    assert distance_mm[labels > 0].max() <= 4.0
    voxel_mm3 = float(np.prod(zooms))
    for level in np.unique(labels[labels > 0]):
        pieces, count = ndimage.label(labels == level, structure=np.ones((3, 3, 3)))
        assert np.bincount(pieces.ravel())[1:].min() * voxel_mm3 >= 2

    sidecar = json.loads(out.with_suffix("").with_suffix(".json").read_text())
    assert sidecar["Options"]["postprocessing"] == {"level_range": [2, 9], "max_distance_mm": 4.0,
                                                    "min_volume_mm3": 2.0, "order_levels": True}
    table = pd.read_csv(tmp_path / "sub-fakelesion_T2w_rootlets_spinal_levels.csv")
    assert list(table.columns[:7]) == ["spinal_level", "fname", "slice_start", "slice_end",
                                       "distance_from_pmj_start", "distance_from_pmj_end", "height"]
    level_map = nib.load(tmp_path / "sub-fakelesion_T2w_rootlets_spinal_levels.nii.gz")
    np.testing.assert_array_equal(level_map.affine, labels_image.affine)
    assert not np.any(np.asanyarray(level_map.dataobj)[~cord_mask])


def test_without_a_cord_mask_the_computed_one_keeps_rootlets_near_the_cord(tiny_model_root, tmp_path,
                                                                          rootlets_home):
    from sct_rootlets.anatomy.cord import CordSegmenter
    from sct_rootlets.io.image import load_input_image

    image = REAL / "sub-fakelesion_T2w.nii.gz"
    out = tmp_path / "seg" / "out.nii.gz"
    result = run_cli("-i", image, "-o", out, "-model", tiny_model_root, "-max-distance-mm", "4", "-v", "0",
                     env_home=rootlets_home)
    assert result.returncode == 0, result.stderr
    sidecar = json.loads(out.with_suffix("").with_suffix(".json").read_text())
    assert sidecar["Options"]["cord_mask"]["Computed"] is True
    assert sidecar["Options"]["cord_mask"]["Model"] == "sct-rootlets-cord"
    assert sidecar["Options"]["region"] == "fast" and sidecar["Options"]["roi_margin_mm"] == 20.0
    assert sidecar["Options"]["engine"] in ("openvino", "openvino-bf16"), "auto: OpenVINO for the fast region"
    assert sidecar["Options"]["postprocessing"] == {"max_distance_mm": 4.0, "order_levels": True}, \
        "the user's distance replaces -canal-mm"
    labels_image = nib.load(out)
    labels = np.asanyarray(labels_image.dataobj)
    cord = CordSegmenter(device="cpu").segment(load_input_image(image)) > 0
    distance_mm = ndimage.distance_transform_edt(~cord, sampling=labels_image.header.get_zooms()[:3])
    assert labels.any() and distance_mm[labels > 0].max() <= 4.0
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.json", "out.nii.gz"], "no other file is written"


def test_options_that_need_labels_are_refused_before_inference(tiny_model_root, tmp_path, rootlets_home):
    image = REAL / "sub-fakelesion_T2w.nii.gz"
    out = tmp_path / "out.nii.gz"
    before = set(tmp_path.iterdir())
    result = run_cli("-i", image, "-o", out, "-model", tiny_model_root, "-dilate", "2", "-shape", "disk",
                     env_home=rootlets_home)
    assert result.returncode == 1 and "Invalid dilation" in result.stderr
    assert set(tmp_path.iterdir()) == before


def test_dilate_command(tmp_path, rootlets_home):
    labels = np.zeros((9, 9, 9), np.uint8)
    labels[4, 4, 4] = 6
    source = tmp_path / "rootlets.nii.gz"
    nib.save(nib.Nifti1Image(labels, np.diag([0.8, 0.8, 0.8, 1])), source)
    result = run_cli("-i", source, "-dilate", "1", "-shape", "disk", "-dim", "2", env_home=rootlets_home,
                     command="sct_rootlets_dilate")
    assert result.returncode == 0, result.stderr
    dilated = np.asanyarray(nib.load(tmp_path / "rootlets_dil.nii.gz").dataobj)
    assert dilated.sum() == 6 * 5 and dilated[4, 4, 3] == 0 and dilated[3, 4, 4] == 6


def test_qc_entries_from_segmentation_and_levels(tiny_model_root, tmp_path, rootlets_home):
    image, cord = REAL / "sub-fakelesion_T2w.nii.gz", REAL / "sub-fakelesion_T2w_label-SC_seg.nii.gz"
    out = tmp_path / "seg" / "sub-fakelesion_T2w_rootlets.nii.gz"
    qc = tmp_path / "qc"
    result = run_cli("-i", image, "-o", out, "-model", tiny_model_root, "-device", "cpu", "-s", cord, "-qc", qc,
                     "-qc-dataset", "study", "-qc-subject", "sub-fakelesion", "-v", "0", env_home=rootlets_home)
    assert result.returncode == 0, result.stderr
    listed = json.loads((qc / "js" / "datasets.js").read_text().split("window.SCT_QC_DATASETS = ")[1][:-2])
    assert [(e["command"], e["plane"], e["subject"], e["dataset"]) for e in listed] == [
        ("sct_deepseg_rootlets", "Axial", "sub-fakelesion", "study"),
        ("sct_deepseg_rootlets", "Sagittal", "sub-fakelesion", "study")]
    assert listed[0]["cmdline"].startswith("sct_deepseg_rootlets -i ")
    sidecar = json.loads(out.with_suffix("").with_suffix(".json").read_text())
    assert sidecar["Options"]["postprocessing"] == {"canal_mm": 12.0, "order_levels": True}
    labels_image = nib.load(out)
    distance_mm = ndimage.distance_transform_edt(~(np.asanyarray(nib.load(cord).dataobj) > 0),
                                                 sampling=labels_image.header.get_zooms()[:3])
    assert distance_mm[np.asanyarray(labels_image.dataobj) > 0].max() <= 12.0, "by default, only the canal's labels"

    refused = run_cli("-i", out, "-s", cord, "-qc", qc, "-ofolder", tmp_path / "levels", env_home=rootlets_home,
                      command="sct_rootlets_levels")
    assert refused.returncode == 1 and "needs the anatomical image as background (-img)" in refused.stderr
    assert not (tmp_path / "levels").exists()
    levels = run_cli("-i", out, "-s", cord, "-img", image, "-qc", qc, "-ofolder", tmp_path / "levels",
                     env_home=rootlets_home, command="sct_rootlets_levels")
    assert levels.returncode == 0, levels.stderr
    assert len(list((qc / "_json").glob("qc_*.json"))) == 4


def test_missing_disc_label_and_empty_cord_are_refused_before_inference(tiny_model_root, tmp_path, rootlets_home):
    image, cord = REAL / "sub-fakelesion_T2w.nii.gz", REAL / "sub-fakelesion_T2w_label-SC_seg.nii.gz"
    reference = nib.load(cord)
    discs, empty = tmp_path / "discs.nii.gz", tmp_path / "empty.nii.gz"
    disc_data = np.zeros(reference.shape, np.uint8)
    disc_data[50, 50, 10] = 3
    nib.save(nib.Nifti1Image(disc_data, reference.affine, reference.header), discs)
    nib.save(nib.Nifti1Image(np.zeros(reference.shape, np.uint8), reference.affine, reference.header), empty)
    out = tmp_path / "out" / "seg.nii.gz"
    result = run_cli("-i", image, "-o", out, "-model", tiny_model_root, "-discs", discs, "-remove-below-disc", "9",
                     env_home=rootlets_home)
    assert result.returncode == 1 and "Disc label 9 is not in" in result.stderr
    result = run_cli("-i", image, "-o", out, "-model", tiny_model_root, "-s", empty, env_home=rootlets_home)
    assert result.returncode == 1 and "The cord label" in result.stderr and "is empty" in result.stderr
    assert not (tmp_path / "out").exists()
