"""Regenerates docs/review_page.png: the review page in headless Chromium on a real scan of real_bids (sub-errsm11,
with its manual cord mask and the strands the browser tests paint as a prediction), the mouse over a C4 strand.

    PYTHONPATH=. python docs/review_screenshot.py        # needs chromium, chromium-driver and ../shared/data
"""

import sys
import tempfile
from pathlib import Path

import numpy as np

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent / "tests"))

from chromium import SOFTWARE_WEBGL, headless_chromium  # noqa: E402
from review_data import make_real_review_data  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from sct_rootlets.review.server import ReviewServer, open_session  # noqa: E402

SAGITTAL = 2


def main() -> None:
    import nibabel as nib

    with tempfile.TemporaryDirectory() as folder:
        data = make_real_review_data(Path(folder))
        session, _ = open_session(path_data=data["data"], path_pred=data["pred"], rater="Jane Doe")
        driver = headless_chromium(Path(folder) / "profile", SOFTWARE_WEBGL)
        try:
            with ReviewServer(session, 0) as server:
                driver.get(server.url)
                WebDriverWait(driver, 300).until(lambda d: d.execute_script(
                    "return !!window.review && review.state.loadedIndex === 0 && !review.state.loading"))
                labels = np.asarray(nib.load(data["predictions"]["sub-errsm11"]).dataobj)
                voxel = [int(v) for v in np.argwhere(labels == 4)[1]]
                canvas = driver.find_element("id", "gl")
                point = driver.execute_script("return review.voxelToCanvas(...arguments)", *voxel, SAGITTAL)
                ActionChains(driver).move_to_element_with_offset(
                    canvas, round(point["x"] - canvas.size["width"] / 2),
                    round(point["y"] - canvas.size["height"] / 2)).perform()
                driver.find_element("tag name", "body").send_keys("+++")
                point = driver.execute_script("return review.voxelToCanvas(...arguments)", *voxel, SAGITTAL)
                ActionChains(driver).move_to_element_with_offset(
                    canvas, round(point["x"] - canvas.size["width"] / 2),
                    round(point["y"] - canvas.size["height"] / 2)).perform()
                driver.save_screenshot(str(DOCS / "review_page.png"))
        finally:
            driver.quit()


if __name__ == "__main__":
    main()
