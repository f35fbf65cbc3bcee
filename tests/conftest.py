"""Shared fixtures: an isolated SCT_ROOTLETS_HOME, no download unasked, a tiny real nnU-Net model, its zip, a local
model server."""

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel import orientations

from sct_rootlets.store.resolve import OFFLINE_ENV_VAR

sys.path.insert(0, str(Path(__file__).parent))

import tiny_model  # noqa: E402
from http_server import ModelServer  # noqa: E402

import sct_rootlets  # noqa: E402

REPOSITORY = Path(__file__).resolve().parents[1]
SHARED_DATA = REPOSITORY.parent / "shared" / "data"
BIN = Path(sys.executable).parent
#: tests/sct_env checks an SCT-like environment (.ci/sct_env.sh): it is collected only where this variable names
#: that environment's `pip freeze` made before sct_rootlets was installed; anywhere else it is not collected at all.
SCT_FREEZE_ENV_VAR = "SCT_ROOTLETS_SCT_FREEZE_BEFORE"
collect_ignore = [] if os.environ.get(SCT_FREEZE_ENV_VAR) else ["sct_env"]
#: The package under test: the installed one (a wheel, as users get it) unless a developer installed the checkout
#: in editable mode.
PACKAGE_UNDER_TEST = Path(sct_rootlets.__file__).resolve().parent


def _from_checkout() -> bool:
    """Whether the source folder itself is imported (the venv may live inside the checkout: that is installed)."""
    return PACKAGE_UNDER_TEST == REPOSITORY / "sct_rootlets"


def pytest_configure(config):
    """CI tests the package as users install it: importing the checkout instead (an editable install, or
    `python -m pytest`, which puts the current folder first on sys.path) would hide files a wheel leaves out."""
    if os.environ.get("CI") and _from_checkout():
        pytest.exit(f"CI must test the installed package, but sct_rootlets was imported from the checkout "
                    f"({PACKAGE_UNDER_TEST}): install it with pip install '.[nnunet,test]' (not -e) and run "
                    f"the tests with .venv/bin/pytest, not python -m pytest.", returncode=4)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI a skip is a failure: a test that cannot run there (a missing tool, data or library) must be fixed,
    not passed over in silence. Outside CI, skips keep their reason."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which must run every test: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """The same for a whole module skipped at collection (e.g. pytest.importorskip)."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.outcome == "skipped":
        report.outcome = "failed"
        report.longrepr = f"{collector.nodeid} skipped in CI, which must run every test: {report.longrepr}"


def pytest_report_header(config):
    where = "the checkout (editable install)" if _from_checkout() else "the installed package"
    return f"sct_rootlets under test: {PACKAGE_UNDER_TEST} ({where})"


@pytest.fixture(autouse=True)
def rootlets_home(tmp_path, monkeypatch):
    """Every test gets its own model home, so nothing touches the user's installed models."""
    home = tmp_path / "rootlets_home"
    monkeypatch.setenv("SCT_ROOTLETS_HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def no_sct_install(monkeypatch):
    """A machine with SCT (and its copy of the rootlets model) must not change what a plain run uses in tests;
    tests of that path set SCT_DIR themselves."""
    monkeypatch.delenv("SCT_DIR", raising=False)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No test downloads a model unasked: a run without -model uses the bundled starter at once. The first-run
    tests delete the variable and point the default model at the local server."""
    monkeypatch.setenv(OFFLINE_ENV_VAR, "1")


@pytest.fixture
def sct_dir(tmp_path, monkeypatch):
    """An SCT installation holding nothing yet; SCT_DIR points at it."""
    root = tmp_path / "sct"
    (root / "data" / "deepseg_models").mkdir(parents=True)
    monkeypatch.setenv("SCT_DIR", str(root))
    return root


def tree_digest(folder: Path) -> dict:
    """Every file below `folder` (relative path -> SHA-256): what a fixture must still hold after the tests."""
    import hashlib

    return {path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(Path(folder).rglob("*")) if path.is_file()}


def _make_read_only(folder: Path) -> None:
    for path in [Path(folder), *Path(folder).rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)


def copy_writable(source: Path, target: Path) -> Path:
    """A private, writable copy of a (read-only) fixture tree."""
    import shutil

    shutil.copytree(source, target)
    for path in [Path(target), *Path(target).rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)
    return Path(target)


@pytest.fixture(scope="session")
def tiny_model_master(tmp_path_factory) -> Path:
    """The tiny model, built once per session and never handed to a run: tests get a fresh copy of it
    (`tiny_model_root`), so whatever a run writes beside the model (ONNX exports) starts from nothing in every test,
    whichever tests ran before. Read-only (for non-root users) and checked unchanged at the end of the session."""
    root = tmp_path_factory.mktemp("tiny_model_master")
    tiny_model.build_model_folder(root)
    digest = tree_digest(root)
    _make_read_only(root)
    yield root
    assert tree_digest(root) == digest, "a test changed the session's tiny model"


@pytest.fixture
def tiny_model_root(tiny_model_master, tmp_path_factory) -> Path:
    """A model folder in the published layout: <root>/<release>/nnUNetTrainer__nnUNetPlans__3d_fullres/, this
    test's own copy (runs with default options write their ONNX conversions beside the checkpoints), outside the
    test's tmp_path (tests list what they wrote there)."""
    return copy_writable(tiny_model_master, tmp_path_factory.mktemp("tiny_model") / "model")


@pytest.fixture
def tiny_trainer_dir(tiny_model_root) -> Path:
    return tiny_model_root / tiny_model.RELEASE_DIR / tiny_model.TRAINER_DIR


@pytest.fixture(scope="session")
def tiny_model_zip(tiny_model_master, tmp_path_factory) -> Path:
    """The tiny model zipped as the published releases are (release folder at the top)."""
    archive = tiny_model.zip_folder(tiny_model_master, tmp_path_factory.mktemp("zips") / "tiny-rootlets.zip")
    digest = tree_digest(archive.parent)  # tests copy it (shutil.copy keeps the mode: left writable)
    yield archive
    assert tree_digest(archive.parent) == digest, "a test changed the session's tiny model archive"


@pytest.fixture
def model_server(tmp_path):
    """A local HTTP server over tmp_path/served; tests copy archives there."""
    served = tmp_path / "served"
    served.mkdir()
    with ModelServer(served) as server:
        yield server


def write_lab_card(home: Path, name: str, urls, sha256=None, default=False) -> Path:
    """A lab model card in <home>/cards, so registry installs can target the local server."""
    card = {"name": name, "version": "r20990101", "default": default, "description": "tiny test model",
            "urls": list(urls), "sha256": sha256, "labels": {f"C{i}": i for i in range(2, 9)} | {"T1": 9},
            "image_orientation": "LPI", "contrasts": ["T2w"], "license": "MIT", "citation": "test"}
    (home / "cards").mkdir(parents=True, exist_ok=True)
    path = home / "cards" / f"{name}.json"
    path.write_text(json.dumps(card))
    return path


def run_cli(*args, env_home: Path, cwd=None, command="sct_deepseg_rootlets") -> subprocess.CompletedProcess:
    """Run an installed console script as a user would."""
    env = {**os.environ, "SCT_ROOTLETS_HOME": str(env_home)}
    return subprocess.run([str(BIN / command), *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)


def synthetic_t2w(shape=(40, 48, 24), seed=0) -> np.ndarray:
    """An asymmetric volume (bright 'cord' off-centre plus a gradient and noise): flips change it."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    cord = np.exp(-((x - shape[0] * 0.4) ** 2 + (y - shape[1] * 0.6) ** 2) / 30.0)
    data = 800 * cord + 3 * x + 2 * y + z + rng.normal(0, 20, shape)
    return np.clip(data, 0, None).astype(np.int16)


def no_cord_t2w(shape=(40, 48, 24), seed=0) -> np.ndarray:
    """A gradient and noise, nothing else: no cord for a cord model that reads any contrast (to it, the bright
    tube of `synthetic_t2w` is a cord)."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    return np.clip(200 + 3 * x + 2 * y + z + rng.normal(0, 20, shape), 0, None).astype(np.int16)


def ras_image(data=None, zooms=(0.8, 0.8, 0.8)) -> nib.Nifti1Image:
    data = synthetic_t2w() if data is None else data
    affine = np.diag([*zooms, 1.0])
    affine[:3, 3] = [-10.0, -20.0, -30.0]
    image = nib.Nifti1Image(data, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    return image


def stored_as(image: nib.Nifti1Image, axcodes, sform_code: int = 1) -> nib.Nifti1Image:
    """The same physical image with its voxels stored in another axis order (qform code 1, sform `sform_code`)."""
    ornt = orientations.ornt_transform(orientations.io_orientation(image.affine), orientations.axcodes2ornt(axcodes))
    out = image.as_reoriented(ornt)
    out.set_qform(out.affine, code=1)
    out.set_sform(out.affine, code=sform_code)
    return out


def write_labelled_case(folder: Path, subject: str) -> dict:
    """`ras_image()` as <subject>_T2w with a cord mask and rootlets of levels 3 (a strand) and 6 (one voxel) on its
    grid, in `folder` (created): {"image", "cord", "rootlets"} paths."""
    folder.mkdir(parents=True)
    image = ras_image()
    cord = np.zeros(image.shape, np.uint8)
    cord[14:18, 26:31, :] = 1
    rootlets = np.zeros(image.shape, np.uint8)
    rootlets[20, 28, 5:9] = 3
    rootlets[12, 29, 15] = 6
    paths = {"image": folder / f"{subject}_T2w.nii.gz", "cord": folder / f"{subject}_T2w_seg.nii.gz",
             "rootlets": folder / f"{subject}_T2w_rootlets.nii.gz"}
    nib.save(image, paths["image"])
    nib.save(nib.Nifti1Image(cord, image.affine), paths["cord"])
    nib.save(nib.Nifti1Image(rootlets, image.affine), paths["rootlets"])
    return paths
