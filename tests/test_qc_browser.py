"""Our QC viewer in headless Chromium: lists every entry, navigates by keyboard, keeps marks across a reload,
exports the failing subjects, and logs no console error with 50 entries; sorts by the quality score (issue 29)."""

from pathlib import Path

import numpy as np
import pytest

from chromium import headless_chromium, needs_chromium
from conftest import write_labelled_case
from sct_rootlets.qc.entries import add_entry
from sct_rootlets.qc.pictures import save_png
from sct_rootlets.qc.report import rootlets_qc
from sct_rootlets.quality.record import Flag, LevelQuality, Quality

pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
pytestmark = needs_chromium


def _tiny_pictures(images):
    background = np.full((40, 60, 3), 90, np.uint8)
    overlay = np.zeros((40, 60, 4), np.uint8)
    overlay[18:22, 28:32] = (242, 140, 40, 255)
    save_png(background, images.background)
    save_png(overlay, images.overlay)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """50 entries (10 subjects x 5) written by the real entry writer."""
    return _make_report(tmp_path_factory.mktemp("browser"))


def _make_report(root: Path) -> Path:
    """A report of its own (a new UUID, so marks in the browser's storage start empty); entry 8 carries a note."""
    qc_dir = root / "qc"
    for index in range(50):
        subject = f"sub-{index // 5:02d}"
        image = root / "ds" / subject / "anat" / f"{subject}_T2w.nii.gz"
        add_entry(qc_dir, input_path=image, command="sct_deepseg_rootlets", cmdline=f"entry {index}",
                  plane="Axial" if index % 2 == 0 else "Sagittal", render=_tiny_pictures,
                  extras={"levels": ["C5", "C6"] if index % 2 else ["C2"], **({"note": NOTE} if index == 7 else {})})
    return qc_dir


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = headless_chromium(tmp_path_factory.mktemp("chromium-profile"), downloads=tmp_path_factory.mktemp("dl"))
    yield driver
    driver.quit()


#: What a run that did not use its computed cord tells QC (README, "Contrasts").
NOTE = "Computed cord not plausible (it spans 2 mm of the 200 mm field of view): not used."


def _rows(driver):
    return driver.find_elements("css selector", "#entries tbody tr")


def _severe_console_messages(driver):
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def test_viewer_lists_navigates_marks_and_exports(browser, report, tmp_path):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.get((report / "index.html").as_uri())
    try:  # the list is built by the page's script: waited for, not assumed done when the page has loaded
        WebDriverWait(browser, 30).until(lambda _: len(_rows(browser)) == 50)
    except TimeoutException:
        pytest.fail(f"{len(_rows(browser))} rows instead of 50; filters: "
                    f"{browser.find_element('id', 'text-filter').get_attribute('value')!r}; "
                    f"console: {_severe_console_messages(browser)}")
    notes = [row.find_elements("tag name", "td")[9].text for row in _rows(browser)]
    assert notes == [""] * 7 + [NOTE] + [""] * 42
    body = browser.find_element("tag name", "body")
    for _ in range(12):
        body.send_keys(Keys.ARROW_DOWN)
    selected = browser.find_elements("css selector", "#entries tbody tr.selected")
    assert len(selected) == 1 and selected[0].find_elements("tag name", "td")[0].text == "13"
    assert browser.find_element("id", "background").get_attribute("src").endswith("background_img.png")
    # the key press swapped the picture: wait for the new one to load before reading its size
    WebDriverWait(browser, 30).until(lambda driver: driver.execute_script(
        "const img = document.getElementById('background'); return img.complete && img.naturalWidth > 0"))
    assert browser.execute_script("return document.getElementById('background').naturalWidth") == 60

    body.send_keys("f")  # entry 13 belongs to sub-02
    browser.refresh()
    marks = [row.find_elements("tag name", "td")[8].text for row in _rows(browser)]
    assert marks.count("fail") == 1 and marks[12] == "fail"

    browser.find_element("id", "export-button").click()
    assert browser.find_element("id", "export").get_attribute("value") == "sub-02"
    _rows(browser)[7].click()
    assert browser.find_element("id", "caption").text.endswith(NOTE)

    Select(browser.find_element("id", "level-filter")).select_by_value("C2")
    assert len(_rows(browser)) == 25
    browser.save_screenshot(str(tmp_path / "viewer.png"))
    assert (tmp_path / "viewer.png").stat().st_size > 10_000
    assert _severe_console_messages(browser) == []


def test_viewer_keys_filters_and_the_fail_list_download(browser, tmp_path):
    """README: navigates with j/k, toggles the overlay with space, marks pass/fail/artifact with p/f/a, filters by
    subject or text, and exports the failing subjects as a qc_fail_subjects.txt download, one per line.
    Entry n (1-based) belongs to sub-{(n-1)//5}."""
    from selenium.webdriver.support.ui import Select, WebDriverWait

    report = _make_report(tmp_path / "own")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    browser.get((report / "index.html").as_uri())
    body = browser.find_element("tag name", "body")

    def selected_number():
        [row] = browser.find_elements("css selector", "#entries tbody tr.selected")
        return row.find_elements("tag name", "td")[0].text

    assert selected_number() == "1"
    for key in "jjjk":
        body.send_keys(key)
    assert selected_number() == "3"
    overlay_hidden = "return document.getElementById('overlay').classList.contains('hidden')"
    body.send_keys(" ")
    assert browser.execute_script(overlay_hidden) is True
    body.send_keys(" ")
    assert browser.execute_script(overlay_hidden) is False
    body.send_keys("p")             # entry 3: pass
    body.send_keys("j", "a")        # entry 4: artifact
    body.send_keys("j", "f")        # entry 5 (sub-00): fail
    for _ in range(6):
        body.send_keys("j")
    body.send_keys("f")             # entry 11 (sub-02): fail
    marks = [row.find_elements("tag name", "td")[8].text for row in _rows(browser)]
    assert marks[2:5] == ["pass", "artifact", "fail"] and marks[10] == "fail"
    assert sorted(marks) == sorted(["pass", "artifact", "fail", "fail"] + [""] * 46)

    browser.find_element("id", "export-button").click()
    assert browser.find_element("id", "export").get_attribute("value") == "sub-00\nsub-02"
    exported = downloads / "qc_fail_subjects.txt"
    WebDriverWait(browser, 30).until(lambda _: exported.is_file() and exported.read_text() == "sub-00\nsub-02\n")

    Select(browser.find_element("id", "subject-filter")).select_by_value("sub-03")
    rows = _rows(browser)
    assert len(rows) == 5 and {row.find_elements("tag name", "td")[2].text for row in rows} == {"sub-03"}
    Select(browser.find_element("id", "subject-filter")).select_by_value("")
    browser.find_element("id", "text-filter").send_keys("entry 17")
    rows = _rows(browser)
    assert len(rows) == 1 and rows[0].find_elements("tag name", "td")[2].text == "sub-03"
    assert _severe_console_messages(browser) == []


def _quality(score: float, worst: str, flags=()) -> Quality:
    levels = {"C2": LevelQuality(1.0, None, 5), worst: LevelQuality(score, None, 2)}
    return Quality(score=score, confidence=None, levels=levels,
                   flags=tuple(Flag(name, f"{name} at {worst}.", worst) for name in flags))


def test_the_score_column_sorts_both_ways_and_entries_without_a_score_come_last(browser, tmp_path):
    """Written in this order: sub-01 (score 0.6), an entry without extras (as SCT's own), sub-02 (0.2, two flags),
    sub-04 by a run before scores existed, sub-03 (0.9); rootlets_qc writes two entries (axial, sagittal) each."""
    qc_dir = tmp_path / "qc"

    def rootlets(subject, quality=None):
        case = write_labelled_case(tmp_path / "ds" / subject / "anat", subject)
        rootlets_qc(qc_dir, case["image"], case["rootlets"], command="sct_deepseg_rootlets", cmdline=subject,
                    quality=quality)

    rootlets("sub-01", _quality(0.6, "C5"))
    add_entry(qc_dir, input_path=tmp_path / "ds" / "sub-04" / "anat" / "sub-04_T2w.nii.gz", command="sct_deepseg",
              cmdline="sct_deepseg spinalcord", plane="Axial", render=_tiny_pictures)
    rootlets("sub-02", _quality(0.2, "C4", ("gap", "tiny")))
    rootlets("sub-04")
    rootlets("sub-03", _quality(0.9, "C3"))
    browser.get((qc_dir / "index.html").as_uri())

    def shown():
        cells = [row.find_elements("tag name", "td") for row in _rows(browser)]
        return [(cell[2].text, cell[10].text) for cell in cells]

    unscored = [("sub-04", "")] * 3  # the entry without extras, then the older run's two, as written
    assert shown() == [("sub-01", "0.60")] * 2 + [("sub-04", "")] + [("sub-02", "0.20")] * 2 + [("sub-04", "")] * 2 \
        + [("sub-03", "0.90")] * 2
    flags = [row.find_elements("tag name", "td")[11].text for row in _rows(browser)]
    assert flags == ["", "", "", "gap, tiny", "gap, tiny", "", "", "", ""]
    header = browser.find_element("id", "score-header")
    header.click()
    assert shown() == [("sub-02", "0.20")] * 2 + [("sub-01", "0.60")] * 2 + [("sub-03", "0.90")] * 2 + unscored
    assert header.get_attribute("aria-sort") == "ascending"
    header.click()
    assert shown() == [("sub-03", "0.90")] * 2 + [("sub-01", "0.60")] * 2 + [("sub-02", "0.20")] * 2 + unscored
    assert header.get_attribute("aria-sort") == "descending"
    _rows(browser)[4].click()
    assert browser.find_element("id", "caption").text.endswith("score 0.20 (worst C4); flags: gap, tiny")
    _rows(browser)[6].click()  # the entry without extras: nothing added to its caption
    assert browser.find_element("id", "caption").text.endswith("sct_deepseg spinalcord")
    browser.find_element("id", "text-filter").send_keys("tiny")  # flags are searched too
    assert [cells[0] for cells in shown()] == ["sub-02", "sub-02"]
    assert _severe_console_messages(browser) == []
