"""`-cord-model`: SCT's contrast-agnostic cord model used from SCT's folder as it is (checksums recorded in our home,
nothing written in SCT's folder), installed from its release zip without SCT, named in the sidecars, listed by
-list-models; the other cord models and wrong values. A tiny real nnU-Net model stands in for SCT's, in the layout
SCT's release has (SCT facts: spinalcordtoolbox/deepseg/models.py and the model's training scripts)."""

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import tiny_model
from conftest import BIN, REPOSITORY, ras_image, run_cli, synthetic_t2w, tree_digest
from sct_rootlets.anatomy.cord import max_tile_voxels
from sct_rootlets.anatomy.plausibility import measure_cord
from sct_rootlets.cli import deepseg_rootlets, rootlets_batch, rootlets_cord, rootlets_levels

#: SCT's folder, name and release of the model (`sct_deepseg spinalcord`), as SCT's models.py gives them.
SCT_FOLDER = "model_seg_sc_contrast_agnostic_nnunet"
RELEASE_ZIP = "model_contrast_agnostic_20250123.zip"
RELEASE_URL = ("https://github.com/sct-pipeline/contrast-agnostic-softseg-spinalcord/releases/download/v3.0/"
               + RELEASE_ZIP)
NAME = "sct-contrast-agnostic"


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    """The release zip's top folder: the trainer folder with dataset.json (orientation RPI, as the model's
    training data), plans.json and one fold, fold_0/checkpoint_best.pth. Tests copy it and never change it."""
    root = tmp_path_factory.mktemp("cord_release")
    trainer = tiny_model.build_model_folder(root / "build", folds=("0",), image_orientation="RPI",
                                            checkpoint_name="checkpoint_best.pth")
    folder = root / RELEASE_ZIP[:-4]
    folder.mkdir()
    shutil.move(trainer, folder / trainer.name)
    return folder


@pytest.fixture
def sct_cord(sct_dir, release) -> Path:
    """SCT's installed copy: the release unpacked into SCT's model folder, with the source.json SCT writes."""
    folder = sct_dir / "data" / "deepseg_models" / SCT_FOLDER
    shutil.copytree(release, folder)
    source = {"model_name": SCT_FOLDER, "model_urls": [RELEASE_URL], "custom": False}
    (folder / "source.json").write_text(json.dumps(source, indent=4))
    return folder


def _files_sha256(trainer: Path) -> str:
    """The sidecar's FilesSHA256 worked out by hand: SHA-256 over "relative path  SHA-256" lines of dataset.json,
    plans.json and the checkpoint (README, "Sidecar")."""
    lines = "".join(f"{name}  {hashlib.sha256((trainer / name).read_bytes()).hexdigest()}\n"
                    for name in ("dataset.json", "plans.json", "fold_0/checkpoint_best.pth"))
    return hashlib.sha256(lines.encode()).hexdigest()


def _all_paths(folder: Path) -> list:
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*"))


#: A cord-shaped image (9.6 x 9.6 mm across, 64 mm long at 0.8 mm): the tiny stand-in's "cord" fills most of each
#: slice, so on this field of view it measures like a cord (about 85 mm², the whole length) and passes the
#: plausibility check that every computed cord goes through (README, "Contrasts"), as SCT's model's cord would.
IMAGE_SHAPE = (12, 12, 80)


def _image(folder: Path, name="sub-01_T1w.nii.gz") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(ras_image(synthetic_t2w(IMAGE_SHAPE)), folder / name)
    return folder / name


def _mask(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj)


def test_scts_cord_model_finds_the_cord_for_the_fast_region_and_levels(sct_cord, tiny_model_root, rootlets_home,
                                                                       tmp_path):
    before, paths_before = tree_digest(sct_cord), _all_paths(sct_cord)
    image = _image(tmp_path / "in")
    pmj = np.zeros(nib.load(image).shape, np.uint8)
    pmj[6, 6, 79] = 1  # the top slice, above the cord's centre
    nib.save(nib.Nifti1Image(pmj, nib.load(image).affine), tmp_path / "in" / "pmj.nii.gz")

    cord = run_cli("-i", image, "-cord-model", NAME, "-o", tmp_path / "sct_seg.nii.gz", env_home=rootlets_home,
                   command="sct_rootlets_cord")
    bundled = run_cli("-i", image, "-o", tmp_path / "bundled_seg.nii.gz", env_home=rootlets_home,
                      command="sct_rootlets_cord")
    rootlets = run_cli("-i", image, "-model", tiny_model_root, "-cord-model", NAME, "-pmj",
                       tmp_path / "in" / "pmj.nii.gz", "-o", tmp_path / "rootlets.nii.gz", env_home=rootlets_home)

    assert cord.returncode == 0, cord.stderr
    assert rootlets.returncode == 0, rootlets.stderr
    assert f"Using SCT's copy of {NAME} at {sct_cord} instead of downloading it" in cord.stderr
    expected = {"Computed": True, "Found": True, "Model": NAME, "Version": "v3.0", "Source": f"SCT ({sct_cord})",
                "ArchiveSHA256": None, "FilesSHA256": _files_sha256(sct_cord / tiny_model.TRAINER_DIR)}
    sidecar = json.loads((tmp_path / "rootlets.json").read_text())
    measures = sidecar["Options"]["cord_mask"].pop("Measures")  # the cord it checked: the cord command's (below)
    assert sidecar["Options"]["cord_mask"] == {**expected, "Plausible": True}
    assert sidecar["Options"]["region"] == "fast"
    cord_sidecar = json.loads((tmp_path / "sct_seg.json").read_text())
    assert cord_sidecar["Model"]["Name"] == NAME and cord_sidecar["Model"]["Source"] == f"SCT ({sct_cord})"
    assert cord_sidecar["Model"]["FilesSHA256"] == expected["FilesSHA256"]
    assert cord_sidecar["GeneratedBy"][0]["ModelURL"] == RELEASE_URL

    # The option chose the model: the bundled one finds another cord in this synthetic image, or none it keeps.
    mask = _mask(tmp_path / "sct_seg.nii.gz") > 0
    assert mask.any()
    assert measures == measure_cord(mask, nib.load(image).affine).as_dict()
    assert bundled.returncode == 1 and ("No spinal cord was found" in bundled.stderr
                                        or "is not plausible" in bundled.stderr) or \
        not np.array_equal(mask, _mask(tmp_path / "bundled_seg.nii.gz") > 0)
    # The rootlets run used this cord: its levels lie where the cord command's mask lets them.
    levels = _mask(tmp_path / "rootlets_spinal_levels.nii.gz")
    assert levels.any() and not levels[~mask].any()
    assert (tmp_path / "rootlets_spinal_levels.csv").is_file()

    assert tree_digest(sct_cord) == before and _all_paths(sct_cord) == paths_before  # nothing added or changed
    records = [json.loads(path.read_text()) for path in (rootlets_home / "sct_copies").glob(f"{NAME}.*.json")]
    assert [(record["folder"], record["source"]) for record in records] == [(str(sct_cord), RELEASE_URL)]
    assert sorted(records[0]["files"]) == [f"{tiny_model.TRAINER_DIR}/{name}" for name in
                                           ("dataset.json", "fold_0/checkpoint_best.pth", "plans.json")]
    assert not (rootlets_home / "models" / NAME).exists()


def test_list_models_shows_scts_cord_model(sct_cord, rootlets_home, capsys):
    assert deepseg_rootlets.main(["-list-models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"{NAME} [cord model: -cord-model {NAME}, installed by SCT at {sct_cord}, used from there]" in lines
    assert "sct-rootlets-cord [cord model: -cord-model sct-rootlets-cord, bundled]" in lines


def test_without_sct_the_release_installs_from_its_zip_and_is_used(release, model_server, rootlets_home, tmp_path,
                                                                    capsys):
    """A lab mirror of the shipped card (same facts, the local server as its address) stands in for GitHub."""
    archive = tiny_model.zip_folder(release.parent, model_server.root / RELEASE_ZIP)
    card = json.loads((Path(deepseg_rootlets.__file__).parents[1] / "model_cards" / f"{NAME}.json").read_text())
    mirror = f"{NAME}-mirror"
    (rootlets_home / "cards").mkdir(parents=True)
    (rootlets_home / "cards" / f"{mirror}.json").write_text(json.dumps({**card, "name": mirror,
                                                                        "urls": [model_server.url(RELEASE_ZIP)]}))

    assert deepseg_rootlets.main(["-install", mirror, "-v", "0"]) == 0
    image = _image(tmp_path)
    assert rootlets_cord.main(["-i", str(image), "-cord-model", mirror, "-v", "0"]) == 0

    archive_sha256 = hashlib.sha256(archive.read_bytes()).hexdigest()
    record = json.loads((rootlets_home / "models" / mirror / "sct_rootlets_install.json").read_text())
    assert record["archive_sha256"] == archive_sha256 and record["checksum"] == "recorded at first install"
    model = json.loads((tmp_path / "sub-01_T1w_seg.json").read_text())["Model"]
    assert model["Name"] == mirror and model["ArchiveSHA256"] == archive_sha256 and "Source" not in model
    assert model_server.requests == [(RELEASE_ZIP, None, 200)]
    capsys.readouterr()
    assert deepseg_rootlets.main(["-list-models"]) == 0
    assert f"{mirror} [cord model: -cord-model {mirror}, installed]" in capsys.readouterr().out.splitlines()


def test_the_release_zip_installs_under_the_cards_name(release, tmp_path, rootlets_home):
    """-install-from of the release's file (as downloaded by hand) is recognised as the card's model by its name."""
    archive = tiny_model.zip_folder(release.parent, tmp_path / RELEASE_ZIP)
    assert deepseg_rootlets.main(["-install-from", str(archive), "-v", "0"]) == 0
    record = json.loads((rootlets_home / "models" / NAME / "sct_rootlets_install.json").read_text())
    assert record["name"] == NAME and record["version"] == "v3.0"


def _batch(tmp_path, tiny_model_root, *options) -> list:
    dataset = tmp_path / "ds"
    _image(dataset / "sub-01" / "anat", "sub-01_T2w.nii.gz")
    return ["-path-data", str(dataset), "-path-output", str(tmp_path / "out"), "-model", str(tiny_model_root),
            "-no-qc", "-v", "0", *options]


def test_batch_passes_the_cord_model_to_every_image(sct_cord, tiny_model_root, tmp_path):
    assert rootlets_batch.main(_batch(tmp_path, tiny_model_root, "-cord-model", NAME)) == 0
    sidecar = tmp_path / "out" / "derivatives" / "labels" / "sub-01" / "anat" / "sub-01_T2w_label-rootlets_dseg.json"
    cord_mask = json.loads(sidecar.read_text())["Options"]["cord_mask"]
    assert cord_mask["Model"] == NAME and cord_mask["Source"] == f"SCT ({sct_cord})"


@pytest.mark.parametrize("cord_model", [NAME, "nonexistent"])
def test_process_script_takes_the_cord_model_as_its_fourth_argument(cord_model, sct_cord, tiny_model_root, tmp_path):
    """sct_run_batch -script-args "MODEL SUFFIX CORD": the cord model's mask feeds the levels; a wrong one fails the
    job (it must not pass for "no cord found", which the script tolerates)."""
    dataset = tmp_path / "ds"
    _image(dataset / "sub-01" / "anat", "sub-01_T2w.nii.gz")
    out = tmp_path / "run"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "SCT_ROOTLETS_HOME": str(tmp_path / "h"),
           "PATH_DATA": str(dataset), "PATH_DATA_PROCESSED": str(out / "data_processed"),
           "PATH_RESULTS": str(out / "results"), "PATH_LOG": str(out / "log"), "PATH_QC": str(out / "qc")}
    job = subprocess.run(["bash", str(REPOSITORY / "batch/process_rootlets.sh"), "sub-01", str(tiny_model_root),
                          "T2w", cord_model], env=env, capture_output=True, text=True, timeout=600)
    anat = out / "data_processed/sub-01/anat"
    if cord_model == NAME:
        assert job.returncode == 0, job.stderr[-3000:]
        assert json.loads((anat / "sub-01_T2w_seg.json").read_text())["Model"]["Source"] == f"SCT ({sct_cord})"
        assert (anat / "sub-01_T2w_label-rootlets_dseg_spinal_levels.csv").is_file()
    else:
        assert job.returncode == 1 and "sct_rootlets_cord: error: Unknown cord model 'nonexistent'" in job.stderr
        assert not (anat / "sub-01_T2w_label-rootlets_dseg.nii.gz").exists()


UNKNOWN = ("Unknown cord model 'nonexistent': not a folder, not installed, and not one of bundled, "
           "sct-contrast-agnostic, sct-rootlets-cord (see sct_deepseg_rootlets -list-models).")
NOT_A_CORD_MODEL = ("rootletseg-r20250318 is a rootlets model, not a cord model; cord models: bundled, "
                    "sct-contrast-agnostic, sct-rootlets-cord (or an nnU-Net model folder).")
NOT_INSTALLED = ("Cord model sct-contrast-agnostic is not installed here and SCT has no copy of its release; "
                 "install it with: sct_deepseg_rootlets -install sct-contrast-agnostic   (or give a model folder, "
                 "e.g. SCT's own, with -cord-model FOLDER)")


@pytest.mark.parametrize("value, message", [("nonexistent", UNKNOWN), ("rootletseg-r20250318", NOT_A_CORD_MODEL),
                                            (NAME, NOT_INSTALLED)])
@pytest.mark.parametrize("command", ["sct_deepseg_rootlets", "sct_rootlets_cord", "sct_rootlets_batch",
                                     "sct_rootlets_levels"])
def test_a_wrong_cord_model_is_one_sentence_and_exit_1(command, value, message, tiny_model_root, tmp_path, capsys):
    image = _image(tmp_path / "in")
    arguments = {"sct_deepseg_rootlets": (deepseg_rootlets, ["-i", str(image), "-model", str(tiny_model_root)]),
                 "sct_rootlets_cord": (rootlets_cord, ["-i", str(image)]),
                 "sct_rootlets_batch": (rootlets_batch, _batch(tmp_path, tiny_model_root)),
                 "sct_rootlets_levels": (rootlets_levels, ["-i", str(image), "-img", str(image)])}
    module, argv = arguments[command]
    written_before = _all_paths(tmp_path)

    assert module.main([*argv, "-cord-model", value]) == 1

    assert capsys.readouterr().err.splitlines() == [f"{command}: error: {message}"]
    assert _all_paths(tmp_path) == written_before


def test_the_one_tile_limit_shrinks_with_the_networks_width():
    """12 M voxels for a first stage of 8 features or fewer (the bundled network); a network 4 times as wide gets a
    quarter, 3 M (nnU-Net's default width of 32, as SCT's); plans older than nnU-Net 2.2 name the width
    UNet_base_num_features."""
    def plans(configuration):
        return {"configurations": {"3d_fullres": configuration}}

    def width(features):
        return plans({"architecture": {"arch_kwargs": {"features_per_stage": [features, 2 * features]}}})

    assert max_tile_voxels(width(8), "3d_fullres") == 12_000_000
    assert max_tile_voxels(width(4), "3d_fullres") == 12_000_000
    assert max_tile_voxels(width(32), "3d_fullres") == 3_000_000
    assert max_tile_voxels(plans({"UNet_base_num_features": 32}), "3d_fullres") == 3_000_000


def test_sct_rootlets_cord_model_is_the_same_option_as_cord_model():
    """-model and -cord-model of sct_rootlets_cord name the same model (one destination)."""
    folder_model = rootlets_cord.get_parser().parse_args(["-i", "a.nii.gz", "-model", "x"])
    cord_model = rootlets_cord.get_parser().parse_args(["-i", "a.nii.gz", "-cord-model", "x"])
    default = rootlets_cord.get_parser().parse_args(["-i", "a.nii.gz"])
    assert folder_model.cord_model == cord_model.cord_model == "x" and default.cord_model == "bundled"


def test_scts_copy_of_another_release_is_not_used(sct_cord, tiny_model_root, tmp_path, capsys):
    """SCT's folder is used only when its source.json names the card's release (SCT may update its model)."""
    other = RELEASE_URL.replace("/v3.0/", "/v9.9/").replace(RELEASE_ZIP, "model_contrast_agnostic_20990101.zip")
    (sct_cord / "source.json").write_text(json.dumps({"model_name": SCT_FOLDER, "model_urls": [other],
                                                      "custom": False}))
    before = _all_paths(sct_cord), tree_digest(sct_cord)
    assert rootlets_cord.main(["-i", str(_image(tmp_path)), "-cord-model", NAME]) == 1
    assert capsys.readouterr().err.splitlines() == [f"sct_rootlets_cord: error: {NOT_INSTALLED}"]
    assert rootlets_cord.main(["-i", str(_image(tmp_path)), "-cord-model", str(sct_cord), "-v", "0"]) == 0
    assert json.loads((tmp_path / "sub-01_T1w_seg.json").read_text())["Model"]["Name"] == SCT_FOLDER
    assert (_all_paths(sct_cord), tree_digest(sct_cord)) == before  # as a folder too, SCT's is only read
