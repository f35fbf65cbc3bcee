"""The review page in headless Chromium (WebGL through SwiftShader): load a generated subject, paint, erase, relabel
and undo through the page (NiiVue's pen driven by real mouse clicks, tools chosen by keyboard), save, and check the
saved file voxel by voxel, its grid and its sidecar; a stale tab's save is refused on the page.

Needs Debian's chromium and chromium-driver (.ci/run installs them); without them the tests skip with that reason,
and in CI (CI=true) a skip is a failure (tests/conftest.py)."""

import json

import nibabel as nib
import numpy as np
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.support.ui import WebDriverWait

from chromium import SOFTWARE_WEBGL, headless_chromium, needs_chromium
from review_data import Client, make_review_data
from sct_rootlets.review.saving import nifti_bytes
from sct_rootlets.review.server import ReviewServer, open_session

TIMEOUT_S = 90
pytestmark = needs_chromium


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = headless_chromium(tmp_path_factory.mktemp("chromium-profile"), SOFTWARE_WEBGL)
    yield driver
    driver.quit()


@pytest.fixture
def served(tmp_path):
    data = make_review_data(tmp_path)
    session, _ = open_session(path_data=data["data"], path_pred=data["pred"], rater="Grace Hopper")
    with ReviewServer(session, 0) as server:
        yield data, session, server


def _wait_loaded(driver, index: int) -> None:
    WebDriverWait(driver, TIMEOUT_S).until(lambda d: d.execute_script(
        "return !!window.review && review.state.loadedIndex === arguments[0] && !review.state.loading", index))


def _wait_saved(driver) -> dict:
    WebDriverWait(driver, TIMEOUT_S).until(lambda d: d.execute_script(
        "return review.state.lastSave !== null && !review.state.saving"))
    return driver.execute_script("const s = review.state.lastSave; review.state.lastSave = null; return s")


def _keys(driver, keys: str) -> None:
    driver.find_element("tag name", "body").send_keys(keys)


def _click_voxel(driver, voxel) -> None:
    """A real mouse click on the axial tile where voxel (i, j, k) of the file is drawn (the page first puts the
    cross-hair on that voxel, so the axial tile shows its slice)."""
    canvas = driver.find_element("id", "gl")
    point = driver.execute_script("return review.voxelToCanvas(...arguments)", *voxel)
    assert point is not None, voxel
    size = canvas.size
    ActionChains(driver).move_to_element_with_offset(canvas, round(point["x"] - size["width"] / 2),
                                                     round(point["y"] - size["height"] / 2)).click().perform()


def _severe(driver) -> list:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def test_paint_erase_relabel_undo_save_through_the_page(browser, served):
    data, session, server = served
    browser.get_log("browser")  # the module's browser is shared: drop what earlier tests logged (e.g. a 409)
    browser.get(server.url)
    _wait_loaded(browser, 0)
    assert browser.current_url.endswith("/")  # the token left the address bar
    assert browser.execute_script("return review.countLabelled()") == 80
    assert browser.execute_script("return review.nv.volumes.length") == 1  # no cord mask for these subjects

    _keys(browser, "j")  # next image: sub-02, stored A-I-L (axes permuted and flipped)
    _wait_loaded(browser, 1)
    prediction = np.asarray(nib.load(data["predictions"]["sub-02"]).dataobj)
    expected = prediction.copy()
    empty = tuple(int(v) for v in np.argwhere(prediction == 0)[len(np.argwhere(prediction == 0)) // 3])
    labelled = [tuple(int(v) for v in voxel) for voxel in np.argwhere(prediction == 2)]
    level3 = [tuple(int(v) for v in voxel) for voxel in np.argwhere(prediction == 3)]

    _keys(browser, "7")  # paint C7
    _click_voxel(browser, empty)
    expected[empty] = 7
    _keys(browser, "e")  # erase one voxel of C2
    _click_voxel(browser, labelled[0])
    expected[labelled[0]] = 0
    _keys(browser, "9")  # paint T1 on another empty voxel, then undo it
    undone = tuple(int(v) for v in np.argwhere(prediction == 0)[-40])
    _click_voxel(browser, undone)
    assert browser.execute_script("return review.state.depth") == 3
    _keys(browser, "u")
    assert browser.execute_script("return review.state.depth") == 2
    _keys(browser, "8r")  # relabel the C3 strand (a connected piece) as C8: click one of its voxels
    _click_voxel(browser, level3[len(level3) // 2])
    WebDriverWait(browser, TIMEOUT_S).until(lambda d: "Relabelled 20 voxels to C8" in d.find_element(
        "id", "status").text)
    for voxel in level3:
        expected[voxel] = 8

    _keys(browser, "s")
    result = _wait_saved(browser)
    assert result["ok"], result
    assert result["voxels_changed"] == int(np.count_nonzero(expected != prediction)) == 22

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
    browser.get(server.url)
    _wait_loaded(browser, 0)
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

    # leaving with unsaved edits asks again first; the reloaded image is the newer correction
    _keys(browser, "j")
    assert "Unsaved edits" in browser.find_element("id", "status").text
    assert browser.execute_script("return review.state.index") == 0
    _keys(browser, "j")
    _wait_loaded(browser, 1)
    _keys(browser, "k")
    _wait_loaded(browser, 0)
    assert browser.execute_script("return review.state.source") == "correction"
