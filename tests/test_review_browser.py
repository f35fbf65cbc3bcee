"""The review page in headless Chromium (WebGL through SwiftShader), driven as a user does (keys, mouse): paint,
erase, relabel, undo/redo, fill between slices on generated subjects; on two real scans of real_bids (one stored
P-S-R as acquired, one rewritten R-A-S) the default window, window/level by right drag, zoom and pan, a larger brush,
the 3D ball and the erase of a connected piece; every edit checked voxel by voxel in the saved file. A stale tab's
save is refused, and unsaved edits survive leaving the image. The list shows the worst first with scores and flags,
and `n` opens the worst image not yet reviewed (issue 29).

Needs Debian's chromium and chromium-driver (.ci/run installs them); without them the tests skip with that reason,
and in CI (CI=true) a skip is a failure (tests/conftest.py)."""

import json

import nibabel as nib
import numpy as np
import pytest
from nibabel import orientations
from scipy import ndimage
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.actions.mouse_button import MouseButton
from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from chromium import SOFTWARE_WEBGL, headless_chromium, needs_chromium
from review_data import (REAL_BIDS, REAL_SUBJECTS, Client, make_real_review_data, make_review_data,
                         make_scored_review_data)
from sct_rootlets.review.saving import nifti_bytes
from sct_rootlets.review.server import ReviewServer, open_session

TIMEOUT_S = 120
AXIAL, CORONAL, SAGITTAL = 0, 1, 2  # NiiVue's tile types
pytestmark = needs_chromium


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = headless_chromium(tmp_path_factory.mktemp("chromium-profile"), SOFTWARE_WEBGL)
    yield driver
    driver.quit()


def _serve(data):
    session, _ = open_session(path_data=data["data"], path_pred=data["pred"], rater="Grace Hopper")
    return session, ReviewServer(session, 0)


@pytest.fixture
def served(tmp_path):
    data = make_review_data(tmp_path)
    session, server = _serve(data)
    with server:
        yield data, session, server


@pytest.fixture
def served_real(tmp_path):
    if not REAL_BIDS.is_dir():
        pytest.skip(f"{REAL_BIDS} is absent")
    data = make_real_review_data(tmp_path)
    session, server = _serve(data)
    with server:
        yield data, session, server


def _open(driver, server) -> None:
    driver.get_log("browser")  # the module's browser is shared: drop what earlier tests logged (e.g. a 409)
    driver.get(server.url)
    _wait_loaded(driver, 0)


def _wait_loaded(driver, index: int) -> None:
    WebDriverWait(driver, TIMEOUT_S).until(lambda d: d.execute_script(
        "return !!window.review && review.state.loadedIndex === arguments[0] && !review.state.loading", index))


def _wait_saved(driver) -> dict:
    WebDriverWait(driver, TIMEOUT_S).until(lambda d: d.execute_script(
        "return review.state.lastSave !== null && !review.state.saving"))
    return driver.execute_script("const s = review.state.lastSave; review.state.lastSave = null; return s")


def _keys(driver, keys: str) -> None:
    driver.find_element("tag name", "body").send_keys(keys)


def _js(driver, script: str, *args):
    return driver.execute_script(f"return {script}", *args)


def _canvas_point(driver, voxel, tile: int) -> tuple:
    """Offset from the canvas centre of where file voxel (i, j, k) is drawn in `tile` (the page first puts the
    cross-hair on that voxel, so the tile shows its slice)."""
    point = _js(driver, "review.voxelToCanvas(...arguments)", *(int(v) for v in voxel), tile)
    assert point is not None, voxel
    size = driver.find_element("id", "gl").size
    return point["x"] - size["width"] / 2, point["y"] - size["height"] / 2


def _click_voxel(driver, voxel, tile: int = AXIAL) -> None:
    """A real mouse click on the tile where voxel (i, j, k) of the file is drawn."""
    x, y = _canvas_point(driver, voxel, tile)
    ActionChains(driver).move_to_element_with_offset(driver.find_element("id", "gl"), round(x), round(y)) \
        .click().perform()


def _severe(driver) -> list:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


class Ras:
    """A file's voxels in NiiVue's R-A-S voxel order (worked out by nibabel, not by the page): `array(data)` turns a
    file array into that order, `file_voxel(ras_voxel)` gives the file's index of a voxel."""

    def __init__(self, image):
        self.ornt = orientations.io_orientation(image.affine)
        self.shape = image.shape[:3]
        self.index = self.array(np.arange(np.prod(self.shape)).reshape(self.shape))

    def array(self, data):
        return orientations.apply_orientation(np.asarray(data), self.ornt)

    def file_voxel(self, ras_voxel):
        return tuple(int(v) for v in np.unravel_index(self.index[tuple(ras_voxel)], self.shape))

    def ras_voxel(self, file_voxel):
        return tuple(int(v) for v in np.argwhere(self.index == np.ravel_multi_index(file_voxel, self.shape))[0])

    def bitmap_index(self, file_voxel) -> int:
        """Where a file voxel sits in NiiVue's drawing (R-A-S order, x fastest)."""
        x, y, z = self.ras_voxel(file_voxel)
        nx, ny = self.index.shape[:2]
        return x + y * nx + z * nx * ny


def _ball(radius: float) -> list:
    """Offsets (1 mm isotropic voxels) at most `radius` from the centre."""
    reach = int(radius)
    return [(x, y, z) for x in range(-reach, reach + 1) for y in range(-reach, reach + 1)
            for z in range(-reach, reach + 1) if x * x + y * y + z * z <= radius * radius]


def test_paint_erase_relabel_undo_redo_fill_save_through_the_page(browser, served):
    data, session, server = served
    _open(browser, server)
    assert browser.current_url.endswith("/")  # the token left the address bar
    assert _js(browser, "review.countLabelled()") == 80
    assert _js(browser, "review.nv.volumes.length") == 1  # no cord mask for these subjects

    _keys(browser, "j")  # next image: sub-02, stored A-I-L (axes permuted and flipped)
    _wait_loaded(browser, 1)
    prediction = np.asarray(nib.load(data["predictions"]["sub-02"]).dataobj)
    ras = Ras(nib.load(data["predictions"]["sub-02"]))
    expected = prediction.copy()
    empty = tuple(int(v) for v in np.argwhere(prediction == 0)[len(np.argwhere(prediction == 0)) // 3])
    labelled = [tuple(int(v) for v in voxel) for voxel in np.argwhere(prediction == 2)]
    level3 = [tuple(int(v) for v in voxel) for voxel in np.argwhere(prediction == 3)]
    level4 = [tuple(int(v) for v in voxel) for voxel in np.argwhere(prediction == 4)]

    _keys(browser, "7")  # paint C7
    _click_voxel(browser, empty)
    expected[empty] = 7
    _keys(browser, "e")  # erase one voxel of C2
    _click_voxel(browser, labelled[0])
    expected[labelled[0]] = 0
    _keys(browser, "9")  # paint T1 on another empty voxel, undo it, redo it, undo it again
    undone = tuple(int(v) for v in np.argwhere(prediction == 0)[-40])
    _click_voxel(browser, undone)
    assert _js(browser, "review.state.depth") == 3
    _keys(browser, "u")
    assert _js(browser, "review.state.depth") == 2
    drawn = "review.nv.drawBitmap[arguments[0]]"
    assert _js(browser, drawn, ras.bitmap_index(undone)) == 0
    _keys(browser, "U")  # redo
    assert _js(browser, drawn, ras.bitmap_index(undone)) == 9
    assert _js(browser, "review.state.depth") == 3
    _keys(browser, "u")
    _keys(browser, "8r")  # relabel the C3 strand (a connected piece) as C8: click one of its voxels
    _click_voxel(browser, level3[len(level3) // 2])
    WebDriverWait(browser, TIMEOUT_S).until(lambda d: "Relabelled 20 voxels to C8" in d.find_element(
        "id", "status").text)
    for voxel in level3:
        expected[voxel] = 8
    _keys(browser, "x")  # erase the C4 strand, a connected piece, with one click
    _click_voxel(browser, level4[0])
    WebDriverWait(browser, TIMEOUT_S).until(lambda d: "Erased a piece of 20 voxels" in d.find_element(
        "id", "status").text)
    for voxel in level4:
        expected[voxel] = 0

    # fill between slices: a 3 x 3 square of C6 (brush 3) on axial slices 2 and 6, then i with the cross-hair
    # on slice 4 fills slices 3-5 with the same square (R-A-S voxels, worked out here)
    square = {(x, y, z) for x in (16, 17, 18) for y in (4, 5, 6) for z in range(2, 7)}
    assert not {ras.ras_voxel(empty), ras.ras_voxel(undone)} & square  # the fill meets no earlier edit
    _keys(browser, "6]")
    for z in (2, 6):
        _click_voxel(browser, ras.file_voxel((17, 5, z)), AXIAL)
    _js(browser, "review.goToVoxel(...arguments)", *ras.file_voxel((17, 5, 4)))
    _keys(browser, "i")
    assert "Filled 27 voxels of C6 between slices 2 and 6" in browser.find_element("id", "status").text
    for voxel in square:
        expected[ras.file_voxel(voxel)] = 6

    _keys(browser, " 4")  # labels hidden: nothing is painted unseen (the saved file below has no such voxel)
    _click_voxel(browser, tuple(int(v) for v in np.argwhere(prediction == 0)[7]))
    _keys(browser, " ")

    _keys(browser, "s")
    result = _wait_saved(browser)
    assert result["ok"], result
    assert result["voxels_changed"] == int(np.count_nonzero(expected != prediction)) == 2 + 20 + 20 + 45

    saved = nib.load(session.items[1].correction)
    image = nib.load(data["images"]["sub-02"])
    np.testing.assert_array_equal(np.asarray(saved.dataobj), expected)  # voxel by voxel
    assert saved.get_data_dtype() == np.uint8 and saved.shape == image.shape
    np.testing.assert_array_equal(saved.affine, image.affine)
    np.testing.assert_array_equal(saved.get_sform(), image.get_sform())
    np.testing.assert_array_equal(saved.get_qform(), image.get_qform())
    assert (int(saved.header["qform_code"]), int(saved.header["sform_code"])) == (1, 2)
    generated_by = json.loads(session.items[1].correction_sidecar.read_text())["GeneratedBy"]
    assert generated_by[0]["Name"].startswith("sct_rootlets_batch")
    assert generated_by[-1]["Name"] == "Manual" and generated_by[-1]["Author"] == "Grace Hopper"
    assert browser.find_element("css selector", "#items tbody tr.selected td:last-child").text == "✓"

    _keys(browser, "f")  # mark it failed: listed for manual_correction.py
    WebDriverWait(browser, TIMEOUT_S).until(lambda d: "active" in d.find_element("id", "mark-fail").get_attribute(
        "class"))  # the page shows a mark once the server has written it
    assert "sub-02/anat/sub-02_T2w.nii.gz" in session.marks.qc_fail_path.read_text()
    assert _severe(browser) == []


def test_a_stale_tab_cannot_overwrite_a_newer_correction(browser, served):
    data, session, server = served
    _open(browser, server)
    # while the page has sub-01 open, someone saves a correction of it from elsewhere
    client = Client(server.port, session.token)
    prediction = nib.load(data["predictions"]["sub-01"])
    other = np.asarray(prediction.dataobj).copy()
    other[0, 0, 0] = 5
    assert client.save(0, nifti_bytes(nib.Nifti1Image(other, prediction.affine)), "none", rater="Someone")[0] == 200

    _keys(browser, "4")
    _click_voxel(browser, (1, 1, 1))
    _keys(browser, "s")
    result = _wait_saved(browser)
    assert not result["ok"] and result["status"] == 409
    assert "changed since this tab loaded it" in browser.find_element("id", "status").text
    np.testing.assert_array_equal(np.asarray(nib.load(session.items[0].correction).dataobj), other)

    # leaving with unsaved edits loses nothing, whatever comes between (the annotator's paint, j, p, click a row):
    # the edits stay in the tab as a draft and come back with the image
    ras = Ras(prediction)
    _keys(browser, "j")
    _wait_loaded(browser, 1)
    assert browser.find_element("css selector", "#items tbody tr:first-child td:last-child").text == "●"
    _keys(browser, "p")
    WebDriverWait(browser, TIMEOUT_S).until(lambda d: "active" in d.find_element("id", "mark-pass").get_attribute(
        "class"))
    browser.find_element("css selector", "#items tbody tr:nth-child(3)").click()
    _wait_loaded(browser, 2)
    browser.find_element("css selector", "#items tbody tr:first-child").click()
    _wait_loaded(browser, 0)
    assert _js(browser, "review.nv.drawBitmap[arguments[0]]", ras.bitmap_index((1, 1, 1))) == 4
    assert _js(browser, "review.isDirty()")
    _keys(browser, "s")  # still based on the version this tab first loaded: still refused
    assert _wait_saved(browser)["status"] == 409

    # discarding is explicit: X reloads the image from disk once confirmed, which shows the newer correction
    assert "X reloads it" in browser.find_element("id", "status").text
    _keys(browser, "X")
    browser.switch_to.alert.dismiss()  # not confirmed: the edits stay
    assert _js(browser, "review.isDirty()")
    _keys(browser, "X")
    browser.switch_to.alert.accept()
    WebDriverWait(browser, TIMEOUT_S).until(lambda d: d.execute_script(
        "return !review.state.loading && review.state.source === 'correction' && !review.isDirty()"))
    assert browser.find_element("css selector", "#items tbody tr:first-child td:last-child").text != "●"
    assert _js(browser, "review.nv.drawBitmap[arguments[0]]", ras.bitmap_index((0, 0, 0))) == 5

    # painting then undoing back to what was loaded is not an unsaved edit
    _keys(browser, "7")
    _click_voxel(browser, (2, 2, 2))
    assert _js(browser, "review.isDirty()")
    _keys(browser, "u")
    assert not _js(browser, "review.isDirty()")


#: The mark shown in the list for the image open (read in one go: the list is redrawn as marks come back).
SELECTED_MARK = "document.querySelector('#items tbody tr.selected td:nth-child(4)').textContent"


def test_the_list_is_worst_first_with_flags_and_n_opens_the_worst_not_yet_reviewed(browser, tmp_path):
    """Scores by hand (review_data.QUALITY): sub-03 0.2 (two flags), sub-01 0.7, then sub-02 (no record) and sub-04
    (an unreadable one) in dataset order. sub-01 is marked before the page opens."""
    data = make_scored_review_data(tmp_path)
    session, server = _serve(data)
    with server:
        assert Client(server.port, session.token).mark(1, "pass")[0] == 200  # sub-01
        _open(browser, server)
        rows = browser.find_elements("css selector", "#items tbody tr")
        assert [row.find_elements("tag name", "td")[1].text.split("\n")[0] for row in rows] == [
            "sub-03/ses-01", "sub-01", "sub-02", "sub-04"]
        assert [row.find_elements("tag name", "td")[2].text for row in rows] == ["0.20", "0.70", "–", "–"]
        flags = rows[0].find_elements("css selector", ".flag")
        assert [flag.text for flag in flags] == ["missing_level", "small_level"]
        assert flags[0].get_attribute("title") == "missing_level (C3): No C3 rootlets between C2 and C4."
        assert [len(row.find_elements("css selector", ".flag")) for row in rows[1:]] == [0, 0, 0]
        shown = browser.find_element("id", "quality").text
        assert shown.startswith("Score 0.20 · worst C4 0.20")
        assert "small_level (C4): C4 has 3 voxels, far fewer than C2." in shown
        assert "n" in [term.get_attribute("textContent") for term in browser.find_elements("css selector", "#help dt")]

        # n: the lowest score neither marked nor the image shown, then those without a score in list order
        for key, expected in (("n", 2),        # sub-03 shown, sub-01 marked: sub-02, the first without a score
                              ("n", 0),        # sub-03 (0.2) is not marked yet: back to it, not on to sub-04
                              ("f", None), ("n", 2), ("p", None), ("n", 3)):
            _keys(browser, key)
            if expected is None:
                WebDriverWait(browser, TIMEOUT_S).until(lambda d: _js(d, SELECTED_MARK) != "")
            else:
                _wait_loaded(browser, expected)
        _keys(browser, "a")
        WebDriverWait(browser, TIMEOUT_S).until(lambda d: _js(d, SELECTED_MARK) == "artifact")
        _keys(browser, "n")  # every other image is marked: it stays
        WebDriverWait(browser, TIMEOUT_S).until(lambda d: "marked" in d.find_element("id", "status").text)
        assert _js(browser, "review.state.index") == 3
    marks = json.loads(session.marks.path.read_text(encoding="utf-8"))
    assert {name.split("/")[0]: record["mark"] for name, record in marks.items()} == {
        "sub-01": "pass", "sub-03": "fail", "sub-02": "pass", "sub-04": "artifact"}
    assert _severe(browser) == []


def _window(driver) -> list:
    return _js(driver, "[review.nv.volumes[0].cal_min, review.nv.volumes[0].cal_max]")


def _right_drag(driver, dx: int, dy: int) -> None:
    actions = ActionBuilder(driver)
    actions.pointer_action.move_to(driver.find_element("id", "gl")).pointer_down(MouseButton.RIGHT)
    actions.pointer_action.move_by(dx, dy).pointer_up(MouseButton.RIGHT)
    actions.perform()


def _check_real_scan(driver, data, session, index: int) -> None:
    """One real scan, open in the page: the default window leaves the CSF unsaturated; the hover readout; window/level
    by right drag; zoom and pan; a 5-voxel brush, a 3D ball of 5 voxels and a piece erase, saved and checked."""
    subject = REAL_SUBJECTS[index][0]
    image = nib.load(data["images"][subject])
    values = np.asarray(image.dataobj)
    cord = np.asarray(nib.load(data["cords"][subject]).dataobj) > 0
    prediction = np.asarray(nib.load(data["predictions"][subject]).dataobj)
    ras = Ras(image)

    # the canal: the manual cord mask dilated by 3 mm (a ball; 1 mm voxels); its CSF must not be saturated
    canal = ndimage.binary_dilation(cord, ndimage.generate_binary_structure(3, 1), iterations=3)
    low, high = _window(driver)
    assert high > np.percentile(values[canal], 99)
    assert np.mean(values[canal] >= high) < 0.01
    assert low < np.percentile(values[cord], 5)  # and the cord is not black
    assert driver.find_element("id", "win-max").get_attribute("value") == str(round(high))

    # hover readout: level, intensity, position in mm of the voxel under the mouse
    strand = [tuple(int(v) for v in voxel) for voxel in np.argwhere(prediction == 3)]
    x, y = _canvas_point(driver, strand[1], SAGITTAL)
    ActionChains(driver).move_to_element_with_offset(driver.find_element("id", "gl"), round(x), round(y)).perform()
    mm = ", ".join(f"{v:.1f}" for v in image.affine[:3, :3] @ strand[1] + image.affine[:3, 3])
    assert driver.find_element("id", "readout").text == f"C3 · {values[strand[1]]} · ({mm}) mm"

    # window/level: a right drag changes the window whatever the storage; w restores the default
    _right_drag(driver, 60, 25)
    assert _window(driver) != [low, high]
    assert driver.find_element("id", "win-max").get_attribute("value") == str(round(_window(driver)[1]))
    _keys(driver, "w")
    assert _window(driver) == [low, high]

    # zoom: + draws the scan 1.25 times larger (two voxels 40 slices apart, farther apart on the screen by that);
    # Shift+arrow pans it; z resets
    centre = np.round(np.argwhere(cord).mean(axis=0)).astype(int)
    ras_centre = np.array(ras.ras_voxel(tuple(centre)))
    above = ras.file_voxel(ras_centre + (0, 0, 20))
    below = ras.file_voxel(ras_centre - (0, 0, 20))

    def span():
        return np.subtract(_canvas_point(driver, above, SAGITTAL), _canvas_point(driver, below, SAGITTAL))

    before = span()
    _keys(driver, "+")
    assert np.allclose(span(), before * 1.25, atol=1.5)
    start = _canvas_point(driver, above, SAGITTAL)
    _keys(driver, "\ue008\ue014")  # Shift+ArrowRight
    assert abs(_canvas_point(driver, above, SAGITTAL)[0] - start[0]) > 5
    _keys(driver, "z")
    assert np.allclose(span(), before, atol=1.5)

    # a 5-voxel brush (two ]) paints a 5 x 5 square in the sagittal slice; b: the 3D ball; x: erase a piece
    expected = prediction.copy()
    square_centre = ras_centre + (-12, 0, 0)
    ball_centre = ras_centre + (-12, 0, 12)
    _keys(driver, "4]]")
    _click_voxel(driver, ras.file_voxel(square_centre), SAGITTAL)
    for dy in range(-2, 3):
        for dz in range(-2, 3):
            expected[ras.file_voxel(square_centre + (0, dy, dz))] = 4
    _keys(driver, "6b")
    _click_voxel(driver, ras.file_voxel(ball_centre), SAGITTAL)
    for offset in _ball(2.5):
        expected[ras.file_voxel(ball_centre + offset)] = 6
    level5 = [tuple(int(v) for v in voxel) for voxel in np.argwhere(prediction == 5)]
    _keys(driver, "x")
    _click_voxel(driver, level5[0], SAGITTAL)
    WebDriverWait(driver, TIMEOUT_S).until(lambda d: f"Erased a piece of {len(level5)} voxels" in d.find_element(
        "id", "status").text)
    for voxel in level5:
        expected[voxel] = 0
    _keys(driver, "b[[")  # back to the 1-voxel 2D pen for the next image
    _keys(driver, "s")
    result = _wait_saved(driver)
    assert result["ok"], result
    saved = nib.load(session.items[index].correction)
    np.testing.assert_array_equal(np.asarray(saved.dataobj), expected)  # voxel by voxel
    np.testing.assert_array_equal(saved.affine, image.affine)
    assert result["voxels_changed"] == 25 + len(_ball(2.5)) + len(level5)


def test_real_scans_window_zoom_brushes_and_piece_erase_in_psr_and_ras_storage(browser, served_real):
    data, session, server = served_real
    assert [nib.aff2axcodes(nib.load(data["images"][s]).affine) for s, _ in REAL_SUBJECTS] == [
        ("P", "S", "R"), ("R", "A", "S")]
    _open(browser, server)
    assert _js(browser, "review.nv.volumes.length") == 2  # the cord mask is shown
    # eight level colours, far from each other and from the cord's green
    colours = [tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)) for c in _js(browser, "review.LEVEL_COLOURS").values()]
    distances = [np.linalg.norm(np.subtract(a, b)) for n, a in enumerate(colours) for b in colours[n + 1:]]
    assert len(colours) == 8 and min(distances) > 60
    assert min(np.linalg.norm(np.subtract(c, (0, 255, 0))) for c in colours) > 150
    # no 3D tile by default; the three planes share the canvas's width (the axial and coronal tiles of these
    # 52 mm wide scans were 74 px wide in NiiVue's grid)
    assert _js(browser, "review.nv.getCustomLayout().map((t) => t.sliceType)") == [SAGITTAL, CORONAL, AXIAL]
    widths = _js(browser, "review.nv.screenSlices.map((s) => s.leftTopWidthHeight[2])")
    assert min(widths) > 100 and sum(widths) > 0.95 * _js(browser, "review.nv.canvas.width")
    _check_real_scan(browser, data, session, 0)
    _keys(browser, "+")  # zoom and window are kept per image
    _right_drag(browser, 40, 0)
    kept = _js(browser, "[Array.from(review.nv.scene.pan2Dxyzmm), review.nv.volumes[0].cal_max]")

    _keys(browser, "j")
    _wait_loaded(browser, 1)
    assert _js(browser, "review.nv.scene.pan2Dxyzmm[3]") == 1
    _check_real_scan(browser, data, session, 1)

    # the view: arrows move one slice of the plane under the mouse, the wheel too; per-level hide, outline, cord
    _keys(browser, "v")  # sagittal alone
    assert _js(browser, "review.nv.getCustomLayout()") is None and _js(browser, "review.nv.opts.sliceType") == 2
    x_before = _js(browser, "review.crosshairVoxel()[0]")
    _keys(browser, "\ue013\ue013\ue015")  # up, up, down: one sagittal slice to the right
    assert _js(browser, "review.crosshairVoxel()[0]") == x_before + 1
    canvas = ScrollOrigin.from_element(browser.find_element("id", "gl"))
    ActionChains(browser).scroll_from_origin(canvas, 0, 120).perform()  # the wheel: one slice
    assert abs(_js(browser, "review.crosshairVoxel()[0]") - (x_before + 1)) == 1
    ActionChains(browser).key_down(Keys.CONTROL).scroll_from_origin(canvas, 0, -120).key_up(Keys.CONTROL).perform()
    assert _js(browser, "review.nv.scene.pan2Dxyzmm[3]") == 1.25  # Ctrl+wheel zooms
    _keys(browser, "z")
    _keys(browser, "\ue008" + "5")  # Shift+5: hide C5
    assert _js(browser, "review.nv.drawLut.lut[5 * 4 + 3]") == 0 and _js(browser, "review.nv.drawLut.lut[4 * 4 + 3]")
    _keys(browser, "oc")
    assert _js(browser, "review.nv.drawRimOpacity") > 0 and _js(browser, "review.nv.volumes[1].opacity") == 0
    _keys(browser, "t")  # back to the three planes, with the 3D rendering
    assert _js(browser, "review.nv.getCustomLayout().map((t) => t.sliceType).sort()") == [0, 1, 2, 4]
    _keys(browser, "t")  # 3D off again (slow in software rendering)
    assert _js(browser, "review.nv.getCustomLayout().length") == 3
    opacity = browser.find_element("id", "opacity")
    opacity.send_keys(Keys.ARROW_LEFT, Keys.ARROW_LEFT, Keys.ESCAPE)  # the labels' opacity slider, 85 % to 75 %
    assert _js(browser, "review.nv.drawRimOpacity") == pytest.approx(0.75)  # (outlined: the rim carries it)

    # NiiVue's own keys do nothing (l: cross-hair right, m: drag mode), even with the canvas focused; the key help
    # covers the image, not the list
    where = _js(browser, "review.crosshairVoxel()")
    browser.execute_script("review.nv.canvas.focus()")
    ActionChains(browser).send_keys("lm").perform()
    assert _js(browser, "review.crosshairVoxel()") == where
    assert _js(browser, "[review.nv.opts.dragMode, document.activeElement.id]") == [9, "gl"]  # windowing
    height = browser.find_element("id", "list-box").size["height"]
    _keys(browser, "?")
    assert browser.find_element("id", "help").is_displayed()
    assert browser.find_element("id", "list-box").size["height"] == height
    _keys(browser, "?")

    _keys(browser, "k")
    _wait_loaded(browser, 0)
    assert _js(browser, "[Array.from(review.nv.scene.pan2Dxyzmm), review.nv.volumes[0].cal_max]") == kept
    assert _severe(browser) == []
