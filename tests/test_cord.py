"""The bundled cord model: `sct_rootlets_cord` on real scans (mask on the input's exact grid, sidecar with the
model's hashes, QC), images without a cord, bad input, and the computed cord wherever a mask is needed (spinal
levels from `sct_rootlets_levels -img` and `sct_rootlets_batch` on a real scan with no mask given)."""

import json
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from conftest import SHARED_DATA, run_cli
from sct_rootlets.anatomy.cord import keep_cord_pieces
from sct_rootlets.qc.metrics import dice

REAL_BIDS = SHARED_DATA / "real_bids"
needs_real_bids = pytest.mark.skipif(not (REAL_BIDS / "sub-errsm24").is_dir(),
                                     reason="../shared/data/real_bids is not available")
SUBJECT = "sub-errsm24"


def _real(subject=SUBJECT):
    return (REAL_BIDS / subject / "anat" / f"{subject}_T2w.nii.gz",
            REAL_BIDS / "derivatives/labels" / subject / "anat" / f"{subject}_T2w_label-SC_seg.nii.gz")


def test_small_pieces_go_and_a_split_cord_stays_whole():
    mask = np.zeros((20, 20, 60), bool)
    mask[8:12, 8:12, 0:28] = True     # the cord, interrupted ...
    mask[8:12, 8:12, 32:60] = True    # ... by a lesion
    mask[1, 1, 1] = mask[18, 2, 40] = True  # specks elsewhere
    kept = keep_cord_pieces(mask)
    expected = mask.copy()
    expected[1, 1, 1] = expected[18, 2, 40] = False
    assert kept.dtype == np.uint8
    np.testing.assert_array_equal(kept > 0, expected)
    assert not keep_cord_pieces(np.zeros((4, 4, 4), bool)).any()


@needs_real_bids
def test_cord_command_on_a_real_scan(tmp_path, rootlets_home):
    """A scan the bundled model was trained on (all four real_bids subjects): a check of the command and its
    files, not an accuracy claim (bench/RESULTS.md has the leave-subjects-out figures)."""
    source, truth_path = _real()
    image = tmp_path / source.name
    shutil.copyfile(source, image)
    result = run_cli("-i", image, "-qc", tmp_path / "qc", env_home=rootlets_home, command="sct_rootlets_cord")
    assert result.returncode == 0, result.stderr
    output = tmp_path / f"{SUBJECT}_T2w_seg.nii.gz"
    mask, reference = nib.load(output), nib.load(image)
    assert mask.shape == reference.shape and mask.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(mask.affine, reference.affine)
    assert int(mask.header["qform_code"]) == int(reference.header["qform_code"])
    data = np.asanyarray(mask.dataobj)
    assert set(np.unique(data)) == {0, 1}
    assert dice(np.asanyarray(nib.load(truth_path).dataobj) > 0, data > 0) > 0.85
    sidecar = json.loads((tmp_path / f"{SUBJECT}_T2w_seg.json").read_text())
    assert sidecar["Model"]["Name"] == "sct-rootlets-cord" and len(sidecar["Model"]["FilesSHA256"]) == 64
    assert sidecar["GeneratedBy"][0]["Name"].startswith("sct_rootlets_cord -i ")
    entries = [json.loads(p.read_text()) for p in (tmp_path / "qc" / "_json").glob("qc_*.json")]
    assert sorted(e["plane"] for e in entries) == ["Axial", "Sagittal"]
    assert {e["command"] for e in entries} == {"sct_rootlets_cord"}

    again = run_cli("-i", image, env_home=rootlets_home, command="sct_rootlets_cord")
    assert again.returncode == 1 and "already exists; use -overwrite" in again.stderr


REAL_CONTRASTS = SHARED_DATA / "real_contrasts"


def test_bundled_model_finds_the_cord_in_every_contrast_at_hand():
    """README ("Contrasts"): the bundled cord model, which saw no scan of these contrasts, finds the cord on the
    real T1w (cord brighter than the CSF), T2*w and MT scans, against their manual masks, and each passes the
    plausibility check, so a plain run crops around the right cord."""
    from sct_rootlets.anatomy.cord import CordSegmenter
    from sct_rootlets.anatomy.plausibility import implausibility, measure_cord
    from sct_rootlets.io.image import load_input_image

    if not REAL_CONTRASTS.is_dir():
        pytest.skip(f"{REAL_CONTRASTS} is absent")
    images = sorted(REAL_CONTRASTS.glob("sub-*/anat/*.nii.gz"))
    assert {path.name.split("_")[-1] for path in images} == {"T1w.nii.gz", "T2starw.nii.gz", "MTS.nii.gz"}
    segmenter = CordSegmenter(device="cpu")
    for path in images:
        truth = REAL_CONTRASTS / "derivatives/labels" / path.parent.relative_to(REAL_CONTRASTS) / path.name.replace(
            ".nii.gz", "_label-SC_seg.nii.gz")
        image = load_input_image(path)
        mask = segmenter.segment(image)
        assert dice(np.asanyarray(nib.load(truth).dataobj) > 0, mask > 0) >= 0.85, path.name
        assert implausibility(measure_cord(mask, image.nifti.affine)) is None, path.name


def test_no_cord_and_bad_input_leave_nothing_behind(tmp_path, rootlets_home):
    smooth = np.fromfunction(lambda x, y, z: 100 + x + y, (60, 80, 40)).astype(np.float32)
    folder = tmp_path / "images"
    folder.mkdir()
    image = folder / "smooth.nii.gz"
    nib.save(nib.Nifti1Image(smooth, np.diag([1.0, 1.0, 1.0, 1.0])), image)
    result = run_cli("-i", image, env_home=rootlets_home, command="sct_rootlets_cord")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]  # none found, or none that can be a cord (README, "Contrasts")
    assert last == f"sct_rootlets_cord: error: No spinal cord was found in {image}; give a cord mask with -s." or \
        last.startswith(f"sct_rootlets_cord: error: The cord computed in {image} is not plausible (")
    missing = run_cli("-i", folder / "absent.nii.gz", env_home=rootlets_home, command="sct_rootlets_cord")
    assert missing.returncode == 1 and len(missing.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in folder.iterdir()) == ["smooth.nii.gz"]


def _rootlets_beside(cord: np.ndarray) -> np.ndarray:
    """Rootlets of levels 2..5 beside a cord mask, rostral to caudal along the image's superior axis (axis 1 of a
    PSR image runs inferior to superior)."""
    rootlets = np.zeros(cord.shape, np.uint8)
    superior = np.flatnonzero(cord.any(axis=(0, 2)))
    top = superior.max() - 60
    for index, level in enumerate(range(2, 6)):
        rows = slice(top - 15 * index - 8, top - 15 * index)
        for y in range(rows.start, rows.stop):
            where = np.argwhere(cord[:, y, :])
            if len(where):
                x, z = where.mean(axis=0).astype(int)
                rootlets[x, y, z + 8] = level
    return rootlets


@needs_real_bids
def test_levels_from_the_image_alone(tmp_path, rootlets_home):
    source, truth_path = _real()
    truth = nib.load(truth_path)
    rootlets = tmp_path / "rootlets.nii.gz"
    nib.save(nib.Nifti1Image(_rootlets_beside(np.asanyarray(truth.dataobj) > 0), truth.affine, truth.header),
             rootlets)
    result = run_cli("-i", rootlets, "-img", source, "-ofolder", tmp_path / "levels", env_home=rootlets_home,
                     command="sct_rootlets_levels")
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(tmp_path / "levels" / "rootlets_spinal_levels.csv")
    assert list(table.spinal_level) == [2, 3, 4, 5]
    assert np.all(np.diff(table.slice_start.to_numpy()) < 0), "C2 most rostral (slices count from the inferior end)"
    refused = run_cli("-i", rootlets, "-ofolder", tmp_path / "none", env_home=rootlets_home,
                      command="sct_rootlets_levels")
    assert refused.returncode == 1 and "give its mask (-s) or the T2w image to find it in (-img)" in refused.stderr


@needs_real_bids
def test_batch_writes_levels_for_a_real_scan_without_a_cord_mask(tiny_model_root, tmp_path, rootlets_home):
    dataset = tmp_path / "ds"
    (dataset / SUBJECT / "anat").mkdir(parents=True)
    shutil.copyfile(_real()[0], dataset / SUBJECT / "anat" / f"{SUBJECT}_T2w.nii.gz")
    result = run_cli("-path-data", dataset, "-path-output", tmp_path / "out", "-model", tiny_model_root,
                     "-no-qc", env_home=rootlets_home, command="sct_rootlets_batch")
    assert result.returncode == 0, result.stderr
    labels = tmp_path / "out" / "derivatives" / "labels" / SUBJECT / "anat"
    sidecar = json.loads((labels / f"{SUBJECT}_T2w_label-rootlets_dseg.json").read_text())
    assert sidecar["Options"]["cord_mask"]["Computed"] is True
    level_map = nib.load(labels / f"{SUBJECT}_T2w_label-rootlets_dseg_spinal_levels.nii.gz")
    assert level_map.shape == nib.load(_real()[0]).shape
    assert (labels / f"{SUBJECT}_T2w_label-rootlets_dseg_spinal_levels.csv").is_file()
