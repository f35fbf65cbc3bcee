"""A run without -model, against the local HTTP server standing in for the published default model: installed on
first use; when that fails, the bundled starter with a one-line warning; with SCT_ROOTLETS_OFFLINE, no network."""

import json
import logging
import re
import shutil

import nibabel as nib
import pytest
import requests

from conftest import ras_image, run_cli, write_lab_card
from http_server import refused_url
from sct_rootlets.store import install, registry
from sct_rootlets.store.resolve import OFFLINE_ENV_VAR, offline_mode, resolve_model

STARTER = "rootletseg-synth-starter"
CAVEAT = registry.offline_default_card().caveat


@pytest.fixture
def online(monkeypatch):
    monkeypatch.delenv(OFFLINE_ENV_VAR)


def _default_at(home, url, sha256=None):
    """A lab card marked default replaces the shipped default: here, the tiny model served locally."""
    write_lab_card(home, "tiny", [url], sha256=sha256, default=True)


def _image(folder):
    path = folder / "sub-01_T2w.nii.gz"
    nib.save(ras_image(), path)
    return path


def _uses(home) -> str:
    listing = run_cli("-list-models", env_home=home)
    assert listing.returncode == 0, listing.stderr
    return listing.stdout.strip().splitlines()[-1]


def test_default_model_is_installed_on_first_use(online, model_server, tiny_model_zip, rootlets_home, tmp_path):
    shutil.copy(tiny_model_zip, model_server.root / "tiny.zip")
    _default_at(rootlets_home, model_server.url("tiny.zip"))
    assert _uses(rootlets_home).startswith("Without -model, sct_deepseg_rootlets uses tiny: the default model, "
                                           "not installed yet, downloaded and installed on first use (if that "
                                           f"fails: the bundled {STARTER};")
    image = _image(tmp_path)

    result = run_cli("-i", image, env_home=rootlets_home)

    assert result.returncode == 0, result.stderr
    assert (f"The default model tiny is not installed: installing it now from {model_server.url('tiny.zip')} "
            f"(first use; {OFFLINE_ENV_VAR}=1 skips this).") in result.stderr
    assert re.search(r"^tiny\.zip: +\d+%\|", result.stderr, re.MULTILINE)  # the download's progress bar
    assert "Warning" not in result.stderr and not (rootlets_home / "models" / STARTER).exists()
    assert model_server.requests == [("tiny.zip", None, 200)]
    sidecar = json.loads((tmp_path / "sub-01_T2w_rootlets.json").read_text())
    assert sidecar["Model"]["Name"] == "tiny"
    assert _uses(rootlets_home) == "Without -model, sct_deepseg_rootlets uses tiny: the default model, installed."

    again = run_cli("-i", image, "-overwrite", env_home=rootlets_home)
    assert again.returncode == 0, again.stderr
    assert "installing it now" not in again.stderr and len(model_server.requests) == 1


#: README ("Models"): a dropped transfer is resumed up to 5 times per mirror; a download nobody asked for tries each
#: mirror once with a 3 s connect timeout.
README_RESUMES = 5
README_FIRST_USE_CONNECT_TIMEOUT_S = 3


@pytest.mark.parametrize("failure, reason", [
    ("refused", "could not be reached ([Errno 111] Connection refused)"),
    ("404", "missing.zip answered HTTP 404"),
    ("dropped", f"kept failing after {README_RESUMES} resumed transfers"),
    ("checksum", "Checksum mismatch for tiny"),
])
def test_failed_first_use_falls_back_to_the_starter_with_one_warning(failure, reason, online, model_server,
                                                                      tiny_model_zip, rootlets_home, caplog):
    shutil.copy(tiny_model_zip, model_server.root / "tiny.zip")
    url = {"refused": refused_url("tiny.zip"), "404": model_server.url("missing.zip")}.get(
        failure, model_server.url("tiny.zip"))
    _default_at(rootlets_home, url, sha256="0" * 64 if failure == "checksum" else None)
    model_server.drop_every["tiny.zip"] = 0 if failure == "dropped" else None

    with caplog.at_level(logging.INFO, logger="sct_rootlets"):
        resolved = resolve_model(None, progress=False)

    assert resolved.name == STARTER
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0], warnings
    assert warnings[0].startswith("Warning: the default model tiny could not be installed: ")
    assert reason in warnings[0] and warnings[0].endswith(f"; using the bundled {STARTER} instead, {CAVEAT}.")
    assert install.read_installation("tiny") is None
    assert not list((rootlets_home / "downloads").iterdir())
    if failure == "dropped":
        assert len(model_server.requests) == 1 + README_RESUMES


def test_failed_first_use_in_the_command_warns_and_segments_with_the_starter(online, model_server, rootlets_home,
                                                                             tmp_path):
    _default_at(rootlets_home, model_server.url("missing.zip"))

    result = run_cli("-i", _image(tmp_path), "-device", "cpu", env_home=rootlets_home)

    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 1 and "answered HTTP 404" in warnings[0] and CAVEAT in warnings[0]
    assert json.loads((tmp_path / "sub-01_T2w_rootlets.json").read_text())["Model"]["Name"] == STARTER


def test_offline_switch_makes_no_network_attempt(model_server, tiny_model_zip, rootlets_home, monkeypatch, caplog):
    shutil.copy(tiny_model_zip, model_server.root / "tiny.zip")
    _default_at(rootlets_home, model_server.url("tiny.zip"))

    def no_network(*args, **kwargs):
        raise AssertionError("the network was used although SCT_ROOTLETS_OFFLINE is set")

    monkeypatch.setattr(requests.Session, "send", no_network)
    with caplog.at_level(logging.WARNING, logger="sct_rootlets"):
        resolved = resolve_model(None)

    assert resolved.name == STARTER and model_server.requests == []
    assert [r.getMessage() for r in caplog.records] == [
        f"Warning: {OFFLINE_ENV_VAR} is set and the default model tiny is not installed; "
        f"using the bundled {STARTER} instead, {CAVEAT}."]
    assert _uses(rootlets_home) == (f"Without -model, sct_deepseg_rootlets uses the bundled {STARTER}: "
                                    f"{OFFLINE_ENV_VAR} is set and the default model tiny is not installed.")


def test_explicit_install_still_downloads_when_offline(model_server, tiny_model_zip, rootlets_home):
    """The switch stops downloads nobody asked for; -install is asked for."""
    shutil.copy(tiny_model_zip, model_server.root / "tiny.zip")
    _default_at(rootlets_home, model_server.url("tiny.zip"))
    result = run_cli("-install", env_home=rootlets_home)
    assert result.returncode == 0, result.stderr
    assert install.read_installation("tiny") is not None and len(model_server.requests) == 1


@pytest.mark.parametrize("value, expected", [("1", True), ("TRUE", True), ("yes", True), ("on", True),
                                             ("0", False), ("false", False), ("", False)])
def test_offline_switch_values(value, expected, monkeypatch):
    monkeypatch.setenv(OFFLINE_ENV_VAR, value)
    assert offline_mode() is expected


def test_first_use_gives_up_quickly_on_a_mirror_that_does_not_answer(online, model_server, tiny_model_zip,
                                                                     rootlets_home, monkeypatch):
    """One connection try per mirror with the short timeout, then the next mirror; no resumes of nothing."""
    shutil.copy(tiny_model_zip, model_server.root / "tiny.zip")
    refused = refused_url("tiny.zip")
    write_lab_card(rootlets_home, "tiny", [refused, model_server.url("tiny.zip")], default=True)
    calls = []
    real_get = requests.Session.get

    def spy(session, url, **kwargs):
        calls.append((url, kwargs["timeout"][0], session.get_adapter(url).max_retries.connect))
        return real_get(session, url, **kwargs)

    monkeypatch.setattr(requests.Session, "get", spy)
    assert resolve_model(None, progress=False).name == "tiny"
    assert calls == [(refused, README_FIRST_USE_CONNECT_TIMEOUT_S, 0),
                     (model_server.url("tiny.zip"), README_FIRST_USE_CONNECT_TIMEOUT_S, 0)]

