"""QC reports: SCT 7.x entries, concurrent writers, pictures, and our viewer in a real browser."""

import json
import multiprocessing
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from conftest import SHARED_DATA, ras_image, run_cli
from sct_rootlets.qc import entries
from sct_rootlets.qc.pictures import axial_mosaic, level_colour, sagittal_overview
from sct_rootlets.qc.report import rootlets_qc

REAL = SHARED_DATA / "real"


def _read_datasets_js(qc_dir: Path) -> tuple:
    """(uuid, entries) parsed from js/datasets.js, which must have exactly SCT's two statements."""
    text = (qc_dir / "js" / "datasets.js").read_text()
    first, second = text.split(";\n", 1)
    assert first.startswith("window.SCT_QC_UUID = '") and first.endswith("'")
    assert second.startswith("window.SCT_QC_DATASETS = ") and second.endswith(";\n")
    return first.split("'")[1], json.loads(second[len("window.SCT_QC_DATASETS = "):-2])


@pytest.fixture
def synthetic_case(tmp_path):
    """dataset/sub-07/anat/ image, a cord, and rootlets including one single voxel of level 6."""
    folder = tmp_path / "study" / "sub-07" / "anat"
    folder.mkdir(parents=True)
    image = ras_image()
    shape = image.shape
    cord = np.zeros(shape, np.uint8)
    cord[14:18, 26:31, :] = 1
    rootlets = np.zeros(shape, np.uint8)
    rootlets[20, 28, 5:9] = 3
    rootlets[12, 29, 15] = 6           # one voxel
    paths = {"image": folder / "sub-07_T2w.nii.gz", "cord": folder / "sub-07_T2w_seg.nii.gz",
             "rootlets": folder / "sub-07_T2w_rootlets.nii.gz"}
    nib.save(image, paths["image"])
    nib.save(nib.Nifti1Image(cord, image.affine), paths["cord"])
    nib.save(nib.Nifti1Image(rootlets, image.affine), paths["rootlets"])
    return paths


def test_entries_have_exactly_sct_keys_and_resolving_images(synthetic_case, tmp_path):
    qc_dir = tmp_path / "qc"
    records = rootlets_qc(qc_dir, synthetic_case["image"], synthetic_case["rootlets"],
                          cord_path=synthetic_case["cord"], command="sct_deepseg_rootlets", cmdline="cmd")
    assert len(records) == 2
    _, listed = _read_datasets_js(qc_dir)
    stored = [json.loads(r.read_text()) for r in records]
    assert listed == stored
    for entry in stored:
        assert tuple(entry) == entries.ENTRY_KEYS
        assert all(isinstance(value, str) for value in entry.values())
        assert (entry["dataset"], entry["subject"], entry["contrast"]) == ("study", "sub-07", "anat")
        assert entry["inputFile"] == "sub-07_T2w.nii.gz"
        for key in ("backgroundImage", "overlayImage"):
            assert not Path(entry[key]).is_absolute() and (qc_dir / entry[key]).is_file()
        assert entry["backgroundImage"].startswith("study/sub-07/anat/sct_deepseg_rootlets/")
    assert [e["plane"] for e in stored] == ["Axial", "Sagittal"]
    assert not list((qc_dir / "_json").glob(".*")), "no reservation left behind"


def test_existing_sct_viewer_is_kept_and_uuid_stable(synthetic_case, tmp_path):
    qc_dir = tmp_path / "qc"
    qc_dir.mkdir()
    (qc_dir / "index.html").write_text("<html>SCT's viewer</html>")
    args = dict(command="sct_rootlets_qc", cmdline="x")
    rootlets_qc(qc_dir, synthetic_case["image"], synthetic_case["rootlets"], **args)
    uuid_first, _ = _read_datasets_js(qc_dir)
    rootlets_qc(qc_dir, synthetic_case["image"], synthetic_case["rootlets"], **args)
    uuid_second, listed = _read_datasets_js(qc_dir)
    assert (qc_dir / "index.html").read_text() == "<html>SCT's viewer</html>"
    assert uuid_first == uuid_second and len(listed) == 4


SCT_UUID = "5f0c2e1a-8d3b-4c6e-9a71-0b2d4e6f8a90"


@pytest.mark.parametrize("written_by_sct", [
    f"\nwindow.SCT_QC_UUID = '{SCT_UUID}';\nwindow.SCT_QC_DATASETS = [];\n",    # SCT 7.4: leading blank line
    f'\n    window.SCT_QC_UUID = "{SCT_UUID}";\n    window.SCT_QC_DATASETS = [];',  # other quoting and indent
    f"window.SCT_QC_DATASETS = [];\nwindow.SCT_QC_UUID='{SCT_UUID}';",           # other order, no spaces
])
def test_report_uuid_written_by_sct_is_kept(written_by_sct, tmp_path):
    (tmp_path / "js").mkdir()
    (tmp_path / "js" / "datasets.js").write_text(written_by_sct)
    (tmp_path / "_json").mkdir()
    (tmp_path / "_json" / "qc_2025_01_01_000000.000000.json").write_text(json.dumps({"command": "sct_deepseg"}))
    entries.rebuild_datasets_js(tmp_path)
    assert _read_datasets_js(tmp_path) == (SCT_UUID, [{"command": "sct_deepseg"}])


def _add_one(args):
    qc_dir, image, rootlets, index = args
    rootlets_qc(qc_dir, image, rootlets, command="sct_deepseg_rootlets", cmdline=f"job {index}",
                subject=f"sub-{index:02d}")


def test_eight_concurrent_writers(synthetic_case, tmp_path):
    qc_dir = tmp_path / "qc"
    jobs = [(qc_dir, synthetic_case["image"], synthetic_case["rootlets"], i) for i in range(8)]
    with multiprocessing.get_context("spawn").Pool(8) as pool:
        pool.map(_add_one, jobs)
    _, listed = _read_datasets_js(qc_dir)
    assert len(listed) == 16 and len(list((qc_dir / "_json").glob("qc_*.json"))) == 16
    assert sorted({e["subject"] for e in listed}) == [f"sub-{i:02d}" for i in range(8)]
    if shutil.which("node"):
        script = (f"global.window = {{}}; require({json.dumps(str(qc_dir / 'js' / 'datasets.js'))}); "
                  "console.log(window.SCT_QC_DATASETS.length)")
        assert subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True).stdout == "16\n"


def test_pictures_keep_single_voxels_and_equal_sizes(synthetic_case):
    image = nib.load(synthetic_case["image"])
    data = image.get_fdata()
    rootlets = np.asanyarray(nib.load(synthetic_case["rootlets"]).dataobj)
    cord = np.asanyarray(nib.load(synthetic_case["cord"]).dataobj)
    zooms = image.header.get_zooms()
    for background, overlay in (axial_mosaic(data, rootlets, image.affine, zooms, cord=cord),
                                sagittal_overview(data, rootlets, image.affine, zooms, cord=cord)):
        assert background.shape[:2] == overlay.shape[:2]
        assert overlay.shape[2] == 4 and background.shape[2] == 3
        assert overlay[0, 0, 3] == 0 and (overlay[..., 3] == 0).mean() > 0.9, "overlay mostly transparent"
        colour = np.array(level_colour(6))
        single = np.all(overlay[..., :3] == colour, axis=2) & (overlay[..., 3] == 255)
        assert single.sum() >= 16, "the 1-voxel C6 rootlet covers at least a 4x4 pixel block"


def test_anisotropic_voxels_keep_their_aspect():
    """A 0.5 x 1.0 mm voxel is drawn twice as tall as wide (rows follow y, columns follow x)."""
    data = np.zeros((30, 30, 10))
    data[10:20, 10:20, :] = 100
    rootlets = np.zeros((30, 30, 10), np.uint8)
    rootlets[15, 15, 5] = 4
    _, overlay = axial_mosaic(data, rootlets, np.diag([0.5, 1.0, 3.0, 1.0]), (0.5, 1.0, 3.0))
    coloured = np.all(overlay[..., :3] == level_colour(4), axis=2) & (overlay[..., 3] == 255)
    pieces, _ = ndimage.label(coloured)
    tile_rows, tile_columns = (2 * 15 + 1) * 8, (2 * 30 + 1) * 4  # +/-15 mm tiles, 4 px per 0.5 mm
    centre = (tile_rows // 2, 2 * tile_columns + tile_columns // 2)  # slices 7, 6, 5, ...: z=5 is the 3rd tile
    assert pieces[centre] > 0, "the rootlet is at its tile's centre"
    block = np.argwhere(pieces == pieces[centre])
    height = block[:, 0].max() - block[:, 0].min() + 1
    width = block[:, 1].max() - block[:, 1].min() + 1
    assert (height, width) == (8, 4)


@pytest.mark.skipif(not (REAL / "sub-fakelesion_T2w.nii.gz").is_file(), reason="../shared/data/real is absent")
def test_qc_command_on_the_real_scan(tmp_path, rootlets_home):
    real = nib.load(REAL / "sub-fakelesion_T2w.nii.gz")
    cord = np.asanyarray(nib.load(REAL / "sub-fakelesion_T2w_label-SC_seg.nii.gz").dataobj) > 0
    rootlets = np.zeros(real.shape, np.uint8)
    centre = np.argwhere(cord).mean(axis=0).astype(int)
    rootlets[centre[0], centre[1], centre[2]] = 5
    path = tmp_path / "rootlets.nii.gz"
    nib.save(nib.Nifti1Image(rootlets, real.affine, real.header), path)
    result = run_cli("-i", REAL / "sub-fakelesion_T2w.nii.gz", "-s", path, "-cord",
                     REAL / "sub-fakelesion_T2w_label-SC_seg.nii.gz", "-qc", tmp_path / "qc", "-qc-subject", "sub-x",
                     env_home=rootlets_home, command="sct_rootlets_qc")
    assert result.returncode == 0, result.stderr
    _, listed = _read_datasets_js(tmp_path / "qc")
    assert [e["subject"] for e in listed] == ["sub-x", "sub-x"]
    for entry in listed:
        background = Image.open(tmp_path / "qc" / entry["backgroundImage"])
        overlay = Image.open(tmp_path / "qc" / entry["overlayImage"])
        assert background.size == overlay.size and overlay.mode == "RGBA"
        pixels = np.asarray(overlay)
        assert np.all(pixels[..., :3] == level_colour(5), axis=2).any()


def test_axial_mosaic_puts_the_superior_slices_first_whatever_the_storage():
    """README: "Axial mosaic: every slice with rootlets (± 2 slices), superior first", in SCT's level colours
    (C2 white, C4 blue). C2 on a superior slice and C4 on an inferior one, stored PSR (voxel order not head-first)."""
    from test_inference import STORED_AS, stored_as

    image = ras_image()
    cord = np.zeros(image.shape, np.uint8)
    cord[14:18, 26:31, :] = 1
    rootlets = np.zeros(image.shape, np.uint8)
    rootlets[19, 28, 20] = 2      # superior (RAS z = 20)
    rootlets[19, 28, 5] = 4       # inferior
    stored = {name: stored_as(nib.Nifti1Image(data, image.affine), STORED_AS["PSR"])
              for name, data in (("image", np.asanyarray(image.dataobj)), ("cord", cord), ("rootlets", rootlets))}
    affine = stored["image"].affine
    _, overlay = axial_mosaic(np.asanyarray(stored["image"].dataobj), np.asanyarray(stored["rootlets"].dataobj),
                              affine, stored["image"].header.get_zooms()[:3],
                              cord=np.asanyarray(stored["cord"].dataobj))
    rgb, alpha = overlay[..., :3].astype(int), overlay[..., 3] > 0
    white = alpha & (rgb.min(axis=2) > 200)
    blue = alpha & (rgb[..., 2] > 150) & (rgb[..., 0] < 120)
    assert white.any() and blue.any()
    # 20 slices (22 down to 3) in reading order: C2's slice 20 is the 3rd tile, C4's slice 5 the 18th
    white_at = np.argwhere(white)
    blue_at = np.argwhere(blue)
    reading_order = lambda at: (at[:, 0].max(), at[:, 1].max())  # noqa: E731
    assert white_at[:, 0].max() < blue_at[:, 0].min() or (
        white_at[:, 0].max() <= blue_at[:, 0].max() and white_at[:, 1].max() < blue_at[:, 1].min()), \
        (reading_order(white_at), reading_order(blue_at))
