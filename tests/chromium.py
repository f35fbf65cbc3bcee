"""Headless Debian Chromium for the browser tests (the QC viewer, the review page): one set of flags, a profile of
its own per driver, the browser console's log kept for the tests to read."""

import shutil
from pathlib import Path
from typing import Optional

import pytest

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
#: Skips a browser test module where Chromium is missing (in CI a skip is a failure: conftest.py).
needs_chromium = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="Debian's chromium and chromium-driver "
                                    "are not installed (.ci/run installs them)")
#: No network chatter, no first-run pages, a fixed window and pixel ratio, no shared memory (containers).
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
         "--window-size=1400,900", "--force-device-scale-factor=1")
#: WebGL without a GPU (the review page's NiiVue draws with WebGL2).
SOFTWARE_WEBGL = ("--use-angle=swiftshader", "--enable-unsafe-swiftshader")


def headless_chromium(profile: Path, extra_flags=(), downloads: Optional[Path] = None):
    """A Selenium driver of headless Chromium with its own profile folder (and download folder, if given)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, *extra_flags, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if downloads is not None:
        options.add_experimental_option("prefs", {"download.default_directory": str(downloads)})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
