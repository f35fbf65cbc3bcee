"""QC reports: SCT 7.x entries, concurrent writers, pictures, and our viewer in a real browser."""

import json
import multiprocessing
import re
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage

from conftest import SHARED_DATA, ras_image, run_cli, stored_as, write_labelled_case
from sct_rootlets.qc import entries
from sct_rootlets.qc.pictures import axial_mosaic, level_colour, sagittal_overview
from sct_rootlets.qc.report import rootlets_qc
from sct_rootlets.quality.record import Flag, LevelQuality, Quality

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
    return write_labelled_case(tmp_path / "study" / "sub-07" / "anat", "sub-07")


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


def test_entries_record_the_quality_score_worst_level_and_flag_names_beside_scts_keys(synthetic_case, tmp_path):
    """Issue 29: the score, the level of lowest score and each flag's name once (in the order raised) go to our
    viewer's extras; SCT's entry keeps exactly its keys, and an entry without a record carries no score."""
    levels = {"C3": LevelQuality(0.9, 0.9, 4), "C5": LevelQuality(0.35, None, 1), "C6": LevelQuality(0.5, 0.6, 1)}
    quality = Quality(score=0.35, confidence=0.7, levels=levels,
                      flags=(Flag("gap", "No rootlets between C3 and C5.", "C4"),
                             Flag("tiny_level", "C5 has 1 voxel.", "C5"), Flag("gap", "Nothing below C6.", "C7")))
    qc_dir = tmp_path / "qc"
    scored = rootlets_qc(qc_dir, synthetic_case["image"], synthetic_case["rootlets"], command="sct_deepseg_rootlets",
                         cmdline="cmd", quality=quality)
    plain = rootlets_qc(qc_dir, synthetic_case["image"], synthetic_case["rootlets"], command="sct_deepseg_rootlets",
                        cmdline="cmd")
    for record in scored + plain:
        assert tuple(json.loads(record.read_text())) == entries.ENTRY_KEYS
    extras = {record: json.loads((qc_dir / entries.EXTRAS_FOLDER / record.name).read_text())
              for record in scored + plain}
    for record in scored:
        assert extras[record] == {"levels": ["C3", "C6"], "score": 0.35, "worst_level": "C5",
                                  "flags": ["gap", "tiny_level"]}
    for record in plain:
        assert extras[record] == {"levels": ["C3", "C6"]}
    listed = (qc_dir / "js" / "rootlets_extras.js").read_text()
    assert listed.count('"score": 0.35') == 2 and listed.count('"worst_level": "C5"') == 2


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
    from test_inference import STORED_AS

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


# --- Text drawn in the pictures: level names per tile, orientation letters, level bars with PMJ distances ------

LEVEL_NAME = re.compile(r"^[CT]\d+$")   # spinal level names as README writes them: C2 ... C8, T1, ...
LETTERS = {"A", "P", "R", "L", "S", "I"}
OPPOSITE = {"top": "bottom", "bottom": "top", "left": "right", "right": "left"}


class TextCalls:
    """ImageDraw.text calls seen so far, each a dict: picture mode, xy, text, fill, pixel bbox."""

    def __init__(self):
        self.calls = []
        self.suppress = lambda text: False   # texts for which the call is recorded but nothing is drawn

    def __iter__(self):
        return iter(self.calls)

    def clear(self):
        self.calls.clear()


@pytest.fixture
def drawn_text(monkeypatch):
    """Records every ImageDraw.text call (and draws it, unless `suppress(text)`)."""
    original = ImageDraw.ImageDraw.text
    recorder = TextCalls()

    def text(self, xy, text, *args, **kwargs):
        bbox = self.textbbox(xy, text, font=kwargs.get("font"), stroke_width=kwargs.get("stroke_width", 0))
        recorder.calls.append({"mode": self.mode, "xy": tuple(xy), "text": text, "fill": kwargs.get("fill"),
                               "bbox": bbox})
        if not recorder.suppress(text):
            original(self, xy, text, *args, **kwargs)

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", text)
    return recorder


def _side(dx: float, dy: float) -> str:
    """Which edge of a picture a displacement from its centre points to (rows grow downwards)."""
    if abs(dx) > abs(dy):
        return "left" if dx < 0 else "right"
    return "top" if dy < 0 else "bottom"


def _bbox_centre(bbox) -> tuple:
    return (bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2


def _stored(axcodes_name: str, image: nib.Nifti1Image, **masks) -> tuple:
    """(image data, affine, zooms, {name: mask data}) of the same physical image stored in another axis order."""
    from test_inference import STORED_AS

    stored = stored_as(image, STORED_AS[axcodes_name])
    out = {name: np.asanyarray(stored_as(nib.Nifti1Image(data, image.affine), STORED_AS[axcodes_name]).dataobj)
           for name, data in masks.items()}
    return np.asanyarray(stored.dataobj), stored.affine, stored.header.get_zooms()[:3], out


def test_axial_mosaic_names_the_levels_of_each_tile_inside_it(drawn_text):
    """README: "Axial mosaic: every slice with rootlets (± 2 slices), superior first, ... level names per tile".
    Rootlets painted (RAS slice numbers): T1 (value 9) on slice 13, nothing on 12, C2 and C4 on 11, C2 on 10, so the
    tiles are slices 15, 14, ..., 8 and only tiles 13, 11 and 10 carry names, exactly their own levels. Stored PSR.
    The names really are in the returned overlay: a rendering without them differs only inside those tiles, and
    there in the levels' colours (C2 white, C4 blue)."""
    image = ras_image()
    cord = np.zeros(image.shape, np.uint8)
    cord[14:18, 26:31, :] = 1
    rootlets = np.zeros(image.shape, np.uint8)
    rootlets[20, 28, 13] = 9
    rootlets[20, 28, 11] = 2
    rootlets[12, 30, 11] = 4
    rootlets[20, 27, 10] = 2
    expected = {15: [], 14: [], 13: ["T1"], 12: [], 11: ["C2", "C4"], 10: ["C2"], 9: [], 8: []}
    data, affine, zooms, masks = _stored("PSR", image, cord=cord, rootlets=rootlets)
    assert nib.aff2axcodes(affine) == ("A", "I", "L"), "the storage really differs from RAS"

    _, overlay = axial_mosaic(data, masks["rootlets"], affine, zooms, cord=masks["cord"])
    height, width = overlay.shape[:2]
    # +/-15 mm tiles of 0.8 mm isotropic voxels are square; 8 of them fit in one row
    assert width == len(expected) * height, (width, height)
    tile = height
    names = [c for c in drawn_text if LEVEL_NAME.match(c["text"])]
    assert names and all(c["mode"] == "RGBA" for c in names), "names are drawn on the overlay"
    found = {z: [] for z in expected}
    for call in names:
        x0, y0, x1, y1 = call["bbox"]
        index = int(x0 // tile)
        assert 0 <= index < len(expected), call
        assert index * tile <= x0 and x1 <= (index + 1) * tile and 0 <= y0 and y1 <= height, \
            f"{call['text']} at {call['bbox']} is not inside tile {index}"
        found[list(expected)[index]].append(call["text"])
    assert {z: sorted(n) for z, n in found.items()} == expected

    name_boxes = [c["bbox"] for c in names]
    drawn_text.clear()
    drawn_text.suppress = lambda text: bool(LEVEL_NAME.match(text))
    _, without_names = axial_mosaic(data, masks["rootlets"], affine, zooms, cord=masks["cord"])
    changed = np.any(overlay != without_names, axis=2)
    inside_boxes = np.zeros_like(changed)
    for x0, y0, x1, y1 in name_boxes:
        inside_boxes[int(y0):int(np.ceil(y1)), int(x0):int(np.ceil(x1))] = True
    assert changed.any() and not (changed & ~inside_boxes).any(), "the names change the picture only where drawn"
    for index, z in enumerate(expected):
        assert changed[:, index * tile:(index + 1) * tile].any() == bool(expected[z]), f"tile of slice {z}"
    rgb = overlay[..., :3].astype(int)
    opaque = overlay[..., 3] == 255
    tile_11 = np.zeros_like(changed)
    tile_11[:, 4 * tile:5 * tile] = True
    white = changed & opaque & tile_11 & (rgb.min(axis=2) > 200)
    blue = changed & opaque & tile_11 & (rgb[..., 2] > 150) & (rgb[..., 0] < 120)
    assert white.any() and blue.any(), "C2's name in white and C4's in blue in the tile of slice 11"


def _letters(calls, width: int, height: int) -> dict:
    """{edge: letter} of the orientation letters drawn inside the (0, 0, width, height) rectangle."""
    out = {}
    for call in calls:
        if call["text"] in LETTERS:
            x, y = _bbox_centre(call["bbox"])
            assert 0 <= x < width and 0 <= y < height, f"{call['text']} outside the picture it labels: {call}"
            edge = _side(x - width / 2, y - height / 2)
            assert edge not in out, f"two letters at the {edge}: {out[edge]}, {call['text']}"
            out[edge] = call["text"]
    return out


def _marker_centre(overlay: np.ndarray, columns: slice, colour_test, text_boxes) -> np.ndarray:
    """(column, row) centroid of the overlay's pixels passing `colour_test` in `columns`, text excluded."""
    rgb = overlay[..., :3].astype(int)
    mask = (overlay[..., 3] == 255) & colour_test(rgb)
    for x0, y0, x1, y1 in text_boxes:
        mask[int(y0):int(np.ceil(y1)), int(x0):int(np.ceil(x1))] = False
    restricted = np.zeros_like(mask)
    restricted[:, columns] = mask[:, columns]
    at = np.argwhere(restricted)
    assert at.size, "marker not found"
    return at.mean(axis=0)[::-1]


def _is_white(rgb):
    return rgb.min(axis=2) > 200


def _is_blue(rgb):
    return (rgb[..., 2] > 150) & (rgb[..., 0] < 120)


@pytest.mark.parametrize("storage", ["RPI", "PSR"])
def test_orientation_letters_name_the_directions_the_pictures_show(storage, drawn_text):
    """README: orientation letters on the QC pictures. Whatever the storage, each letter must sit at the edge towards
    which that direction points in the picture: markers painted in RAS space, a C2 (white) block anterior to the
    cord and a C4 (blue) block on the patient's right for the axial mosaic, a C2 block at the superior end and a C4
    block at the anterior end for the sagittal overview, give the expected edge of A, R, S and A (P, L, I opposite)."""
    image = ras_image()
    cord = np.zeros(image.shape, np.uint8)
    cord[14:18, 26:31, :] = 1
    centre = (16, 28)                  # the cord's centre (x, y): the axial tiles are centred on it
    axial = np.zeros(image.shape, np.uint8)
    axial[centre[0] - 1:centre[0] + 2, centre[1] + 8:centre[1] + 11, 12] = 2       # anterior: +y in RAS
    axial[centre[0] + 8:centre[0] + 11, centre[1] - 1:centre[1] + 2, 12] = 4       # right: +x in RAS
    sagittal = np.zeros(image.shape, np.uint8)
    sagittal[centre[0], 22:26, 20:23] = 2                                          # superior: high z
    sagittal[centre[0], 42:46, 10:14] = 4                                          # anterior: high y
    data, affine, zooms, masks = _stored(storage, image, cord=cord, axial=axial, sagittal=sagittal)
    assert nib.aff2axcodes(affine) != ("R", "A", "S")

    _, overlay = axial_mosaic(data, masks["axial"], affine, zooms, cord=masks["cord"])
    height, width = overlay.shape[:2]
    assert width == 5 * height, "slices 14..10: five square tiles in one row"
    tile = height
    calls = list(drawn_text)
    boxes = [c["bbox"] for c in calls]
    marker_tile = slice(2 * tile, 3 * tile)                                        # slice 12 is the third tile
    tile_centre = np.array([2.5 * tile, tile / 2])
    anterior = _marker_centre(overlay, marker_tile, _is_white, boxes) - tile_centre
    right = _marker_centre(overlay, marker_tile, _is_blue, boxes) - tile_centre
    expected = {_side(*anterior): "A", OPPOSITE[_side(*anterior)]: "P",
                _side(*right): "R", OPPOSITE[_side(*right)]: "L"}
    assert len(expected) == 4, expected
    assert _letters([c for c in calls if c["mode"] == "RGB"], tile, tile) == expected, "axial, first tile"

    drawn_text.clear()
    _, overlay = sagittal_overview(data, masks["sagittal"], affine, zooms, cord=masks["cord"])
    height, width = overlay.shape[:2]
    calls = list(drawn_text)
    picture_centre = np.array([width / 2, height / 2])
    superior = _marker_centre(overlay, slice(0, width), _is_white, []) - picture_centre
    anterior = _marker_centre(overlay, slice(0, width), _is_blue, []) - picture_centre
    expected = {_side(*superior): "S", OPPOSITE[_side(*superior)]: "I",
                _side(*anterior): "A", OPPOSITE[_side(*anterior)]: "P"}
    assert len(expected) == 4, expected
    assert _letters(calls, width, height) == expected, "sagittal"


def _levels_case(tmp_path, distances: bool) -> tuple:
    """Rootlets of C2 on RAS slices 17..21, C3 on 11..16, C4 on 5..10 (one column of voxels each), and their
    spinal-levels CSV as `sct_rootlets_levels` writes it (slices numbered from the inferior end, `slice_start` the
    rostral one; PMJ distances blank without a PMJ), rows deliberately not in rostro-caudal order."""
    image = ras_image()
    rootlets = np.zeros(image.shape, np.uint8)
    spans = {2: (21, 17), 3: (16, 11), 4: (10, 5)}
    for level, (rostral, caudal) in spans.items():
        rootlets[20, 28 + level, caudal:rostral + 1] = level
    pmj = {2: (12.3, 16.4), 3: (17.2, 22.1), 4: (22.9, 27.6)}
    rows = []
    for level in (3, 2, 4):
        start, end = pmj[level] if distances else (np.nan, np.nan)
        rostral, caudal = spans[level]
        rows.append({"spinal_level": level, "fname": "sub-01_T2w_rootlets.nii.gz", "slice_start": rostral,
                     "slice_end": caudal, "distance_from_pmj_start": start, "distance_from_pmj_end": end,
                     "height": end - start, "slice_midpoint": (rostral + caudal) / 2,
                     "distance_from_pmj_midpoint": (start + end) / 2})
    csv = tmp_path / "sub-01_T2w_rootlets_spinal_levels.csv"
    pd.DataFrame(rows).to_csv(csv, index=False, na_rep="")
    return image, rootlets, pd.read_csv(csv)


def _bar_labels(image, rootlets, levels, drawn_text) -> tuple:
    """(overlay, the texts drawn on it from top to bottom) of a sagittal overview."""
    drawn_text.clear()
    _, overlay = sagittal_overview(image.get_fdata(), rootlets, image.affine, image.header.get_zooms()[:3],
                                   levels=levels)
    labels = [c for c in drawn_text if c["mode"] == "RGBA"]
    return overlay, sorted(labels, key=lambda c: c["bbox"][1])


def test_sagittal_overview_has_one_bar_per_level_labelled_with_its_pmj_distances(tmp_path, drawn_text):
    """README: "Sagittal overview: ... when levels were computed, one bar per spinal level with its PMJ distances".
    Each level of the table gets one bar, in its colour, beside the picture, spanning the rows of its rootlets, and
    one label at the bar's height, top to bottom C2, C3, C4 whatever the table's row order, with the level's
    distances from the PMJ in whole mm (12.3-16.4 -> 12-16)."""
    image, rootlets, levels = _levels_case(tmp_path, distances=True)
    overlay, labels = _bar_labels(image, rootlets, levels, drawn_text)
    plain, _ = _bar_labels(image, rootlets, None, drawn_text)
    picture_width = plain.shape[1]
    assert overlay.shape[0] == plain.shape[0] and overlay.shape[1] > picture_width, "a panel beside the picture"
    assert not np.any(overlay[:, :picture_width] != plain[:, :picture_width]), "the bars are beside the picture"

    assert [c["text"] for c in labels] == ["C2 12-16 mm", "C3 17-22 mm", "C4 23-28 mm"]
    assert all(c["bbox"][0] >= picture_width and c["bbox"][2] <= overlay.shape[1] for c in labels), labels
    bars = overlay[:, picture_width:int(min(c["bbox"][0] for c in labels))]
    for level, label in zip((2, 3, 4), labels):
        alone = np.where(rootlets == level, rootlets, 0)
        single, _ = _bar_labels(image, alone, None, drawn_text)
        painted = (single[..., 3] == 255) & np.any(single[..., :3] != 0, axis=2)
        colours = np.unique(single[painted][:, :3], axis=0)
        assert len(colours) == 1, colours
        rows = np.flatnonzero(painted.any(axis=1))
        in_bar = np.all(bars[..., :3] == colours[0], axis=2) & (bars[..., 3] == 255)
        _, count = ndimage.label(in_bar)
        assert count == 1, f"{label['text']}: {count} bars of its colour"
        bar_rows = np.flatnonzero(in_bar.any(axis=1))
        # the bar (1 px outline included) spans the rows of the level's rootlets in the picture
        assert abs(bar_rows.min() - rows.min()) <= 1 and abs(bar_rows.max() - rows.max()) <= 1, \
            (label["text"], (bar_rows.min(), bar_rows.max()), (rows.min(), rows.max()))
        assert rows.min() <= _bbox_centre(label["bbox"])[1] <= rows.max(), f"{label['text']} beside its bar"


def test_sagittal_bar_labels_carry_no_distances_without_a_pmj(tmp_path, drawn_text):
    """Without a PMJ the table's distances are blank: the bars are labelled with the level names alone."""
    image, rootlets, levels = _levels_case(tmp_path, distances=False)
    assert levels["distance_from_pmj_start"].isna().all()
    _, labels = _bar_labels(image, rootlets, levels, drawn_text)
    assert [c["text"] for c in labels] == ["C2", "C3", "C4"]


def test_sct_rootlets_qc_shows_the_score_the_predictions_sidecar_holds(synthetic_case, tmp_path):
    """README: entries of scored predictions show their score; `sct_rootlets_qc` reads it from the label map's
    sidecar (`<stem>.json` beside it), and makes plain entries for a map without one."""
    from sct_rootlets.cli.rootlets_qc import main

    rootlets = Path(synthetic_case["rootlets"])
    sidecar = rootlets.parent / rootlets.name.replace(".nii.gz", ".json")
    record = {"Score": 0.25, "Confidence": 0.5, "Levels": {"C6": {"Score": 0.25, "Confidence": 0.5, "Voxels": 1}},
              "Flags": [{"Name": "one_sided_level", "Level": "C6", "Message": "C6 is on one side only."}]}
    sidecar.write_text(json.dumps({"Quality": record}))
    qc_dir = tmp_path / "qc"
    assert main(["-i", str(synthetic_case["image"]), "-s", str(rootlets), "-qc", str(qc_dir)]) == 0
    extras = [json.loads(path.read_text()) for path in (qc_dir / entries.EXTRAS_FOLDER).glob("*.json")]
    assert len(extras) == 2
    assert all(extra["score"] == 0.25 and extra["worst_level"] == "C6" and extra["flags"] == ["one_sided_level"]
               for extra in extras)
    sidecar.unlink()
    assert main(["-i", str(synthetic_case["image"]), "-s", str(rootlets), "-qc", str(tmp_path / "qc2")]) == 0
    assert all("score" not in json.loads(path.read_text())
               for path in (tmp_path / "qc2" / entries.EXTRAS_FOLDER).glob("*.json"))
