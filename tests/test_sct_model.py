"""A run without -model uses the rootlets model SCT has already installed, when it is the default model's release:
no download, SCT's folder never written to, its checksums recorded in our home at first use and checked after."""

import hashlib
import json
import shutil
import sys
from pathlib import Path

import nibabel as nib
import pytest

import tiny_model
from conftest import ras_image, run_cli, write_lab_card
from sct_rootlets.errors import ModelError
from sct_rootlets.inference.engines import cached_onnx_path
from sct_rootlets.store import install, sct_copy
from sct_rootlets.store.resolve import OFFLINE_ENV_VAR, default_choice, resolve_model

#: The current release, as SCT_CONVENTIONS.md gives it; SCT's source.json names it when SCT installed it.
RELEASE_ZIP = "model-spinal-rootlets-multicon-r20250318.zip"
RELEASE_URL = ("https://github.com/ivadomed/model-spinal-rootlets/releases/download/r20250318/"
               "model-spinal-rootlets-multicon-r20250318.zip")
OTHER_RELEASE_URL = ("https://github.com/ivadomed/model-spinal-rootlets/releases/download/r20240523/"
                     "model-spinal-rootlets_ventral_D106_r20240523.zip")
#: A lab mirror of the release, marked default: the local server stands in for GitHub.
MIRROR = "rootletseg-mirror"
PROG = "sct_deepseg_rootlets"


@pytest.fixture
def online(monkeypatch):
    """Downloads allowed: without SCT's copy, a plain run would fetch the default model from the server."""
    monkeypatch.delenv(OFFLINE_ENV_VAR)


def _install_sct_model(sct_dir: Path, tiny_model_root: Path, model_urls=(RELEASE_URL,)) -> Path:
    """SCT's rootlets model folder: the published zip unpacked, with SCT's source.json."""
    folder = sct_dir / "data" / "deepseg_models" / "model_seg_spinal_rootlets_nnunet"
    shutil.copytree(tiny_model_root, folder)
    source = {"model_name": "model_seg_spinal_rootlets_nnunet", "model_urls": list(model_urls), "custom": False}
    (folder / "source.json").write_text(json.dumps(source, indent=4))
    return folder


def _serve_default(model_server, tiny_model_zip, home: Path) -> str:
    """The default model points at the local server, which really serves an archive: a download would work."""
    shutil.copy(tiny_model_zip, model_server.root / RELEASE_ZIP)
    url = model_server.url(RELEASE_ZIP)
    write_lab_card(home, MIRROR, [url], default=True)
    return url


def _tree(folder: Path) -> dict:
    """Every file and folder below `folder`, files with their SHA-256."""
    return {path.relative_to(folder).as_posix(): (hashlib.sha256(path.read_bytes()).hexdigest()
                                                  if path.is_file() else "folder")
            for path in sorted(folder.rglob("*"))}


def _image(folder: Path) -> Path:
    path = folder / "sub-01_T2w.nii.gz"
    nib.save(ras_image(), path)
    return path


def _listing(home: Path) -> list:
    result = run_cli("-list-models", env_home=home)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()


def test_plain_run_uses_scts_copy_without_network_or_writing_to_it(online, sct_dir, tiny_model_root, model_server,
                                                                   tiny_model_zip, rootlets_home, tmp_path):
    folder = _install_sct_model(sct_dir, tiny_model_root)
    _serve_default(model_server, tiny_model_zip, rootlets_home)
    before = _tree(folder)

    listing = _listing(rootlets_home)
    assert f"{MIRROR} [default, installed by SCT at {folder}, used from there]" in listing
    assert listing[-1] == (f"Without -model, {PROG} uses {MIRROR}: the default model, installed by SCT at {folder}, "
                           f"used from there (not downloaded again).")

    image = _image(tmp_path)
    result = run_cli("-i", image, env_home=rootlets_home)

    assert result.returncode == 0, result.stderr
    assert model_server.requests == []
    assert "installing it now" not in result.stderr and "Warning" not in result.stderr
    assert f"Using SCT's copy of the default model {MIRROR} at {folder} instead of downloading it" in result.stderr
    sidecar = json.loads((tmp_path / "sub-01_T2w_rootlets.json").read_text())
    model = sidecar["Model"]
    assert model["Name"] == MIRROR and model["ArchiveSHA256"] is None
    assert Path(model["Folder"]).is_relative_to(folder)
    assert model["Source"] == f"SCT ({folder})"
    assert sidecar["GeneratedBy"][0]["ModelURL"] == RELEASE_URL
    assert _tree(folder) == before  # nothing written, changed or added in SCT's folder (no ONNX, no record)
    assert install.read_installation(MIRROR) is None and not (rootlets_home / "models" / MIRROR).exists()
    if sidecar["Options"]["engine"].startswith("openvino"):  # the default fast region on a CPU with OpenVINO
        assert list((rootlets_home / "cache").glob("checkpoint_final.*.onnx"))

    records = list((rootlets_home / "sct_copies").glob("*.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert record["folder"] == str(folder) and record["source"] == RELEASE_URL and record["name"] == MIRROR
    trainer = f"{tiny_model.RELEASE_DIR}/{tiny_model.TRAINER_DIR}"
    assert record["files"] == {f"{trainer}/{name}": before[f"{trainer}/{name}"]
                               for name in ("dataset.json", "plans.json", "fold_0/checkpoint_final.pth",
                                            "fold_1/checkpoint_final.pth")}
    assert model["FilesSHA256"]

    again = run_cli("-i", image, "-overwrite", "-region", "whole", env_home=rootlets_home)
    assert again.returncode == 0, again.stderr
    assert model_server.requests == [] and _tree(folder) == before
    assert json.loads((tmp_path / "sub-01_T2w_rootlets.json").read_text())["Model"]["FilesSHA256"] == \
        model["FilesSHA256"]


def test_a_changed_file_in_scts_copy_after_first_use_is_refused(online, sct_dir, tiny_model_root, model_server,
                                                                  tiny_model_zip, rootlets_home, tmp_path):
    folder = _install_sct_model(sct_dir, tiny_model_root)
    _serve_default(model_server, tiny_model_zip, rootlets_home)
    first = resolve_model(None, progress=False)
    assert first.source == f"SCT ({folder})"
    changed = first.folder.trainer_dir / "dataset.json"
    changed.write_text(changed.read_text() + "\n")  # still valid JSON: as if SCT had updated the file
    record = next((rootlets_home / "sct_copies").glob("*.json"))

    result = run_cli("-i", _image(tmp_path), "-region", "whole", env_home=rootlets_home)

    assert result.returncode == 1
    relpath = changed.relative_to(folder).as_posix()
    assert result.stderr.strip().splitlines()[-1] == (
        f"{PROG}: error: SCT's copy of {MIRROR} at {folder} changed since its first use here ({relpath}); to "
        f"accept it delete {record}, or install our own copy with: sct_deepseg_rootlets -install")
    assert model_server.requests == [] and not (tmp_path / "sub-01_T2w_rootlets.nii.gz").exists()

    record.unlink()  # accepting the new files, as the message says
    assert resolve_model(None, progress=False).source == f"SCT ({folder})" and record.is_file()


@pytest.mark.parametrize("source", ["another release", "missing", "unreadable"])
def test_scts_copy_of_another_release_is_ignored(source, online, sct_dir, tiny_model_root, model_server,
                                                 tiny_model_zip, rootlets_home):
    folder = _install_sct_model(sct_dir, tiny_model_root, model_urls=[OTHER_RELEASE_URL])
    if source == "missing":
        (folder / "source.json").unlink()
    elif source == "unreadable":
        (folder / "source.json").write_text("{not json")
    before = _tree(folder)
    url = _serve_default(model_server, tiny_model_zip, rootlets_home)
    assert default_choice().sct_copy is None

    resolved = resolve_model(None, progress=False)  # as today: installed on first use

    assert resolved.source is None and resolved.url == url
    assert resolved.folder.trainer_dir.is_relative_to(rootlets_home / "models" / MIRROR)
    assert model_server.requests == [(RELEASE_ZIP, None, 200)]
    assert _tree(folder) == before and not (rootlets_home / "sct_copies").exists()


def test_our_installed_default_comes_before_scts_copy(online, sct_dir, tiny_model_root, model_server, tiny_model_zip,
                                                      rootlets_home):
    _install_sct_model(sct_dir, tiny_model_root)
    _serve_default(model_server, tiny_model_zip, rootlets_home)
    install.install_model(MIRROR, progress=False)
    resolved = resolve_model(None, progress=False)
    assert resolved.source is None and resolved.folder.trainer_dir.is_relative_to(rootlets_home / "models")
    assert _listing(rootlets_home)[-1] == f"Without -model, {PROG} uses {MIRROR}: the default model, installed."


def test_scts_copy_is_used_offline_too(sct_dir, tiny_model_root, rootlets_home):
    """SCT_ROOTLETS_OFFLINE stops downloads; SCT's copy needs none, so it comes before the bundled starter."""
    folder = _install_sct_model(sct_dir, tiny_model_root)
    write_lab_card(rootlets_home, MIRROR, ["http://127.0.0.1:1/" + RELEASE_ZIP], default=True)
    assert resolve_model(None).source == f"SCT ({folder})"


@pytest.mark.parametrize("model_urls", [
    RELEASE_URL,
    [OTHER_RELEASE_URL, RELEASE_URL],
    {"rootlets": RELEASE_URL},
    {"rootlets": [RELEASE_URL]},
])
def test_source_json_model_urls_may_be_a_string_a_list_or_a_dict(model_urls, sct_dir, tiny_model_root):
    folder = _install_sct_model(sct_dir, tiny_model_root)
    (folder / "source.json").write_text(json.dumps({"model_name": "model_seg_spinal_rootlets_nnunet",
                                                    "model_urls": model_urls, "custom": False}))
    copy = default_choice().sct_copy  # the shipped default card: rootletseg-r20250318
    assert copy is not None and copy.name == "rootletseg-r20250318"
    assert copy.folder == folder and copy.url == RELEASE_URL


def test_sct_root_is_found_from_the_package_without_importing_it(tmp_path, monkeypatch):
    repository = tmp_path / "spinalcordtoolbox-repo"
    (repository / "spinalcordtoolbox").mkdir(parents=True)
    (repository / "spinalcordtoolbox" / "__init__.py").write_text("raise RuntimeError('imported')\n")
    monkeypatch.delenv("SCT_DIR", raising=False)
    monkeypatch.syspath_prepend(str(repository))
    assert sct_copy.sct_root() == repository
    assert "spinalcordtoolbox" not in sys.modules
    monkeypatch.setenv("SCT_DIR", str(tmp_path / "elsewhere"))  # SCT_DIR, when set, wins
    assert sct_copy.sct_root() == tmp_path / "elsewhere"


def test_onnx_exports_of_scts_checkpoints_go_to_our_cache(sct_dir, tiny_model_root, rootlets_home):
    folder = _install_sct_model(sct_dir, tiny_model_root)
    checkpoint = next(folder.rglob("checkpoint_final.pth"))
    cache = rootlets_home / "cache"
    assert cached_onnx_path(checkpoint, "a" * 64, cache) == cache / f"checkpoint_final.{'a' * 16}.onnx"


def test_an_unreadable_record_says_how_to_recover(sct_dir, tiny_model_root, rootlets_home):
    _install_sct_model(sct_dir, tiny_model_root)
    copy = default_choice().sct_copy
    copy.record_path.parent.mkdir(parents=True)
    copy.record_path.write_text("{")
    with pytest.raises(ModelError, match=r"is unreadable; delete it to record the copy's checksums again\.$"):
        resolve_model(None)


def test_a_named_registry_model_not_installed_here_is_used_from_scts_copy(sct_dir, tiny_model_root, rootlets_home):
    """README ("Which model a run without -model uses"): a model named with -model is ours if installed, else SCT's
    copy of its card's release; a changed file then names that model in the command to install our own."""
    folder = _install_sct_model(sct_dir, tiny_model_root)
    resolved = resolve_model("rootletseg-r20250318")
    assert resolved.name == "rootletseg-r20250318" and resolved.source == f"SCT ({folder})"
    changed = resolved.folder.trainer_dir / "plans.json"
    changed.write_text(changed.read_text() + "\n")
    with pytest.raises(ModelError, match=r"install our own copy with: sct_deepseg_rootlets -install "
                                         r"rootletseg-r20250318$"):
        resolve_model("rootletseg-r20250318")
