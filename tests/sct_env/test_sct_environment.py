"""SCT's world: sct_rootlets installed into an environment built from SCT's own requirements (.ci/sct_env.sh, the
README's "Inside SCT" command) changes nothing of SCT, SCT's nnU-Net fork still loads models the way SCT loads
them and predicts what our session predicts, and our commands work there.

Collected only when SCT_ROOTLETS_SCT_FREEZE_BEFORE names the `pip freeze --exclude-editable` of that environment
made before sct_rootlets was installed (tests/conftest.py); elsewhere these checks mean nothing, and here none of
them skips.
"""

import base64
import configparser
import contextlib
import hashlib
import inspect
import io
import json
import os
import shutil
import subprocess
import sysconfig
from importlib import metadata
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

import sct_rootlets
from conftest import BIN, REPOSITORY, SCT_FREEZE_ENV_VAR, run_cli

#: SCT's nnU-Net: a fork that installs the same `nnunetv2` import package as stock nnU-Net.
FORK = "nnunetv2-neuropoly"


@pytest.fixture(scope="module")
def freeze_before() -> Path:
    value = os.environ.get(SCT_FREEZE_ENV_VAR)
    if not value or not Path(value).is_file():
        pytest.fail(f"{SCT_FREEZE_ENV_VAR} must name the pip freeze of the SCT environment made before installing "
                    f"sct_rootlets (got {value!r}); .ci/sct_env.sh writes it.")
    return Path(value)


@pytest.fixture(scope="module")
def generated_scan(tmp_path_factory) -> Path:
    """A small T2w-like scan rendered from the shipped PAM50 maps, stored RAS (SCT's LPI, the models' orientation)
    at 1 mm: a cord where the cord model finds one, larger than its patch at its 1.25 mm (several tiles)."""
    from sct_rootlets.synthetic.render import SynthOptions, generate_case, load_template, write_case

    options = SynthOptions(orientation="LPI", shape=(48, 96, 128), voxel_size=(1.0, 1.0, 1.0))
    return write_case(generate_case(load_template(), 7, options), tmp_path_factory.mktemp("generated"), "sub-001",
                      options)


def frozen_versions(freeze: Path) -> dict:
    """{distribution: version} from a `pip freeze` file; a direct reference (`name @ url`) maps to None."""
    versions = {}
    for line in freeze.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        if "==" in line:
            name, version = line.split("==", 1)
            versions[name.strip()] = version.split(";", 1)[0].strip()
        elif " @ " in line:
            versions[line.split(" @ ", 1)[0].strip()] = None
    return versions


def record_mismatches(distribution: str) -> tuple:
    """(number of files checked, files that no longer match) for the files an installed distribution's RECORD
    lists with a hash: sha256, urlsafe base64 without padding, as wheels record them. RECORD itself carries no
    hash; bytecode is left out too, Python rewrites it whenever it finds it stale (numpy's wheel ships some)."""
    checked, changed = 0, []
    for file in metadata.distribution(distribution).files or []:
        if file.hash is None or file.suffix == ".pyc":
            continue
        if file.hash.mode != "sha256":
            changed.append(f"{file} (RECORD hash {file.hash.mode}, not sha256)")
            continue
        try:
            digest = hashlib.sha256(Path(file.locate()).read_bytes()).digest()
        except FileNotFoundError:
            changed.append(f"{file} (missing)")
            continue
        checked += 1
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != file.hash.value:
            changed.append(str(file))
    return checked, changed


def test_the_installed_package_is_under_test_not_the_checkout():
    site_packages = Path(sysconfig.get_paths()["purelib"]).resolve()
    assert Path(sct_rootlets.__file__).resolve().is_relative_to(site_packages), sct_rootlets.__file__


def test_installing_sct_rootlets_changed_no_version_of_sct_s_environment(freeze_before):
    before = frozen_versions(freeze_before)
    assert FORK in before and "torch" in before and len(before) > 50, "not the freeze of an SCT-like environment"
    changed = {}
    for name, version in before.items():
        try:
            now = metadata.version(name)
        except metadata.PackageNotFoundError:
            now = "removed"
        if now == "removed" or (version is not None and now != version):
            changed[name] = f"{version} -> {now}"
    assert not changed, f"installing sct_rootlets changed SCT's environment: {changed}"
    with pytest.raises(metadata.PackageNotFoundError):  # stock nnU-Net would overwrite the fork's files
        metadata.version("nnunetv2")


def test_every_file_of_sct_s_nnunet_fork_is_as_installed():
    checked, changed = record_mismatches(FORK)
    assert checked > 100, f"{FORK}'s RECORD lists only {checked} hashed files"
    assert not changed, f"files of {FORK} changed since it was installed: {changed[:20]}"


def test_every_file_of_sct_s_environment_is_as_installed(freeze_before):
    """The same check for every distribution of the environment before sct_rootlets came."""
    changed = {}
    for name in frozen_versions(freeze_before):
        changed.update({f"{name}: {file}": True for file in record_mismatches(name)[1]})
    assert not changed, f"files changed since SCT's environment was built: {sorted(changed)[:20]}"


def _sct_style_predictor(model_root: Path):
    """The fork's predictor made and loaded as SCT's deepseg loader makes it (written independently): the one
    trainer folder, its folds ('all' when fold_all is the only one), checkpoint_final, and the fork's trainer_class
    argument (None: the model ships no trainer_class.py)."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    [trainer_dir] = model_root.glob("nnUNetTrainer*")
    folds = sorted(path.name for path in trainer_dir.glob("fold_*"))
    use_folds = "all" if folds == ["fold_all"] else [int(fold.split("_")[-1]) for fold in folds]
    with contextlib.redirect_stdout(io.StringIO()):
        predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                                    perform_everything_on_device=False, device=torch.device("cpu"), verbose=False,
                                    verbose_preprocessing=False, allow_tqdm=False)
        predictor.initialize_from_trained_model_folder(str(trainer_dir), use_folds=use_folds,
                                                       checkpoint_name="checkpoint_final.pth", trainer_class=None)
    return predictor


def test_sct_s_fork_loads_our_cord_model_as_sct_does_and_predicts_what_our_session_does(generated_scan):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from sct_rootlets.anatomy.cord import cord_model
    from sct_rootlets.inference.session import InferenceSession
    from sct_rootlets.io.image import load_input_image

    assert "trainer_class" in inspect.signature(nnUNetPredictor.initialize_from_trained_model_folder).parameters, \
        "`import nnunetv2` does not load SCT's fork"
    model = cord_model()  # the bundled model, installed into this test's SCT_ROOTLETS_HOME
    predictor = _sct_style_predictor(model.folder.trainer_dir.parent)
    image = nib.load(generated_scan)
    assert nib.aff2axcodes(image.affine) == ("R", "A", "S") and image.header.get_zooms() == (1.0, 1.0, 1.0)
    network_input = np.asanyarray(image.dataobj).transpose(2, 1, 0)[np.newaxis].astype(np.float32)
    with contextlib.redirect_stdout(io.StringIO()):
        sct = predictor.predict_single_npy_array(network_input, {"spacing": [1.0, 1.0, 1.0]}, None, None,
                                                 False).transpose(2, 1, 0)
    assert sct.any(), "the cord model finds nothing in the test image: the comparison would prove little"

    loaded = load_input_image(generated_scan)
    whole = InferenceSession(model, device="cpu", engine="torch").predict(loaded)
    np.testing.assert_array_equal(whole, sct)
    # The fast mode runs the tiles and combines the folds itself: over the whole image, in nnU-Net's own tiles
    # (never stretched), it computes what the fork's predictor computes.
    fast = InferenceSession(model, device="cpu", engine="torch", region="fast", roi_margin_mm=0.0,
                            max_tile_stretch=0.0).predict(loaded, np.ones(loaded.data.shape, bool))
    np.testing.assert_array_equal(fast, sct)


def _console_scripts_in_setup_cfg() -> set:
    parser = configparser.ConfigParser()
    parser.read(REPOSITORY / "setup.cfg")
    lines = parser["options.entry_points"]["console_scripts"].strip().splitlines()
    return {line.split("=", 1)[0].strip() for line in lines if "=" in line}


def test_every_console_script_answers_help():
    installed = {entry.name for entry in metadata.distribution("sct_rootlets").entry_points
                 if entry.group == "console_scripts"}
    assert installed == _console_scripts_in_setup_cfg()
    for command in [[name, "-h"] for name in sorted(installed)] + [["sct_rootlets_dataset", "implant", "-h"]]:
        result = subprocess.run([str(BIN / command[0]), *command[1:]], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{' '.join(command)}: {result.stderr[-2000:]}"
        assert result.stdout.startswith("usage:"), f"{' '.join(command)}: {result.stdout[:500]}"


def test_exact_region_segmentation_command(generated_scan, tmp_path, rootlets_home):
    """The default model (the bundled starter, offline) around the cord the bundled cord model computes."""
    path = shutil.copyfile(generated_scan, tmp_path / "sub-01_T2w.nii.gz")
    result = run_cli("-i", path, "-region", "exact", env_home=rootlets_home)
    assert result.returncode == 0, result.stderr
    output = nib.load(tmp_path / "sub-01_T2w_rootlets.nii.gz")
    assert output.shape == nib.load(path).shape and output.get_data_dtype() == np.uint8
    options = json.loads((tmp_path / "sub-01_T2w_rootlets.json").read_text())["Options"]
    assert options["region"] == "exact" and options["cord_mask"]["Computed"] is True, options
