"""Model installation against a local HTTP server: success, tampering, network faults, resume, idempotence."""

import json
import shutil
import zipfile

import nibabel as nib
import pytest

import tiny_model
from conftest import ras_image, run_cli, write_lab_card
from sct_rootlets.store import install
from sct_rootlets.store.download import sha256_of_file
from sct_rootlets.errors import InstallError, ModelError
from sct_rootlets.store.resolve import resolve_model


def _serve(server, archive, name="tiny.zip"):
    shutil.copy(archive, server.root / name)
    return server.url(name)


def _leftovers(home):
    """Anything but finished model folders and lock files: staging folders, partial or finished downloads."""
    models = home / "models"
    found = [p.name for p in models.iterdir() if not p.name.endswith(".lock")] if models.is_dir() else []
    downloads = home / "downloads"
    return found, sorted(p.name for p in downloads.iterdir()) if downloads.is_dir() else []


def test_install_from_registry_card_then_segment(model_server, tiny_model_zip, rootlets_home, tmp_path):
    write_lab_card(rootlets_home, "tiny", [_serve(model_server, tiny_model_zip)])

    result = run_cli("-install", "tiny", env_home=rootlets_home)

    assert result.returncode == 0, result.stderr
    folder = rootlets_home / "models" / "tiny"
    record = json.loads((folder / install.PROVENANCE_FILE).read_text())
    assert record["archive_sha256"] == sha256_of_file(tiny_model_zip)
    assert record["checksum"] == "recorded at first install"
    assert record["source"] == model_server.url("tiny.zip")
    assert f"{tiny_model.RELEASE_DIR}/{tiny_model.TRAINER_DIR}/fold_0/checkpoint_final.pth" in record["files"]
    assert _leftovers(rootlets_home) == (["tiny"], [])

    image = tmp_path / "sub-01_T2w.nii.gz"
    nib.save(ras_image(), image)
    result = run_cli("-i", image, "-model", "tiny", "-v", "0", env_home=rootlets_home)
    assert result.returncode == 0, result.stderr
    sidecar = json.loads((tmp_path / "sub-01_T2w_rootlets.json").read_text())
    assert sidecar["Model"]["Name"] == "tiny" and sidecar["Model"]["ArchiveSHA256"] == record["archive_sha256"]
    assert sidecar["GeneratedBy"][0]["ModelURL"] == model_server.url("tiny.zip")


def test_second_install_is_a_no_op(model_server, tiny_model_zip, rootlets_home):
    write_lab_card(rootlets_home, "tiny", [_serve(model_server, tiny_model_zip)])
    assert run_cli("-install", "tiny", env_home=rootlets_home).returncode == 0
    record = (rootlets_home / "models" / "tiny" / install.PROVENANCE_FILE).read_text()
    requests_before = len(model_server.requests)

    result = run_cli("-install", "tiny", env_home=rootlets_home)

    assert result.returncode == 0, result.stderr
    assert "already installed" in result.stderr
    assert len(model_server.requests) == requests_before, "an intact model must not be downloaded again"
    assert (rootlets_home / "models" / "tiny" / install.PROVENANCE_FILE).read_text() == record


def test_checksum_mismatch_installs_nothing(model_server, tiny_model_zip, rootlets_home):
    write_lab_card(rootlets_home, "tiny", [_serve(model_server, tiny_model_zip)], sha256="0" * 64)

    result = run_cli("-install", "tiny", env_home=rootlets_home)

    assert result.returncode == 1
    assert "Checksum mismatch for tiny" in result.stderr and "not installed" in result.stderr
    assert _leftovers(rootlets_home) == ([], [])


def test_card_checksum_verified_install(model_server, tiny_model_zip, rootlets_home):
    write_lab_card(rootlets_home, "tiny", [_serve(model_server, tiny_model_zip)],
                   sha256=sha256_of_file(tiny_model_zip))
    install.install_model("tiny", progress=False)
    record = install.read_installation("tiny").provenance
    assert record["checksum"] == "verified"


def test_a_card_naming_a_new_archive_replaces_the_older_install(model_server, tiny_model_zip, rootlets_home,
                                                                 tmp_path):
    """An upgraded package whose card names a retrained archive (e.g. the bundled cord model v1 -> v2) must not
    keep using the model installed by the older package just because that install is intact."""
    write_lab_card(rootlets_home, "tiny", [_serve(model_server, tiny_model_zip)],
                   sha256=sha256_of_file(tiny_model_zip))
    install.install_model("tiny", progress=False)
    retrained = tmp_path / "retrained.zip"
    shutil.copy(tiny_model_zip, retrained)
    with zipfile.ZipFile(retrained, "a") as archive:  # another archive of the same model: another checksum
        archive.writestr("README.txt", "retrained")
    write_lab_card(rootlets_home, "tiny", [_serve(model_server, retrained, "tiny-v2.zip")],
                   sha256=sha256_of_file(retrained))
    install.install_model("tiny", progress=False)
    record = install.read_installation("tiny").provenance
    assert record["archive_sha256"] == sha256_of_file(retrained)
    assert record["source"] == model_server.url("tiny-v2.zip")


def test_http_404_on_every_mirror(model_server, rootlets_home):
    write_lab_card(rootlets_home, "tiny", [model_server.url("missing.zip"), model_server.url("gone.zip")])

    result = run_cli("-install", "tiny", env_home=rootlets_home)

    assert result.returncode == 1
    assert "missing.zip answered HTTP 404" in result.stderr and "gone.zip answered HTTP 404" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert _leftovers(rootlets_home) == ([], [])


def test_next_mirror_is_used_after_a_404(model_server, tiny_model_zip, rootlets_home):
    write_lab_card(rootlets_home, "tiny", [model_server.url("missing.zip"), _serve(model_server, tiny_model_zip)])
    install.install_model("tiny", progress=False)
    assert install.read_installation("tiny").provenance["source"] == model_server.url("tiny.zip")


def test_dropped_connection_is_resumed_with_range(model_server, tiny_model_zip, rootlets_home):
    write_lab_card(rootlets_home, "tiny", [_serve(model_server, tiny_model_zip)])
    model_server.drop_after["tiny.zip"] = 70_000

    result = run_cli("-install", "tiny", env_home=rootlets_home)

    assert result.returncode == 0, result.stderr
    (first, second, *more) = model_server.requests
    assert first == ("tiny.zip", None, 200) and not more
    resumed_at = int(second[1].removeprefix("bytes=").removesuffix("-"))
    assert second[2] == 206 and 0 < resumed_at <= 70_000, second
    assert install.read_installation("tiny").archive_sha256 == sha256_of_file(tiny_model_zip)


def test_partial_download_from_an_earlier_run_is_resumed(model_server, tiny_model_zip, rootlets_home):
    write_lab_card(rootlets_home, "tiny", [_serve(model_server, tiny_model_zip)])
    partial = rootlets_home / "downloads" / "tiny.zip.part"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(tiny_model_zip.read_bytes()[:12345])

    install.install_model("tiny", progress=False)

    assert model_server.requests == [("tiny.zip", "bytes=12345-", 206)]
    assert install.read_installation("tiny").archive_sha256 == sha256_of_file(tiny_model_zip)


def test_archive_with_parent_path_entry_is_refused(model_server, rootlets_home, tmp_path, tiny_model_zip):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(tiny_model_zip) as source, zipfile.ZipFile(evil, "w") as zf:
        for info in source.infolist():
            zf.writestr(info, source.read(info))
        zf.writestr("../../escaped.txt", "pwned")
    write_lab_card(rootlets_home, "tiny", [_serve(model_server, evil)])

    result = run_cli("-install", "tiny", env_home=rootlets_home)

    assert result.returncode == 1
    assert "unsafe entry" in result.stderr and "leaves the archive folder" in result.stderr
    assert not list(rootlets_home.parent.rglob("escaped.txt"))
    assert _leftovers(rootlets_home) == ([], [])


def test_archive_that_is_not_a_model_is_refused(rootlets_home, tmp_path):
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("holiday/readme.txt", "no model here")
    with pytest.raises(InstallError, match="not an nnU-Net model archive"):
        install.install_from(str(archive), progress=False)
    assert _leftovers(rootlets_home) == ([], [])


def test_truncated_archive_is_refused(rootlets_home, tmp_path, tiny_model_zip):
    archive = tmp_path / "cut.zip"
    archive.write_bytes(tiny_model_zip.read_bytes()[:-3000])
    with pytest.raises(InstallError, match="not a valid zip archive|corrupt"):
        install.install_from(str(archive), progress=False)
    assert _leftovers(rootlets_home) == ([], [])


def test_tampered_installation_is_detected_and_reinstalled(model_server, tiny_model_zip, rootlets_home):
    write_lab_card(rootlets_home, "tiny", [_serve(model_server, tiny_model_zip)])
    folder = install.install_model("tiny", progress=False)
    checkpoint = folder / tiny_model.RELEASE_DIR / tiny_model.TRAINER_DIR / "fold_1" / "checkpoint_final.pth"
    data = bytearray(checkpoint.read_bytes())
    data[-100] ^= 0xFF
    checkpoint.write_bytes(bytes(data))

    with pytest.raises(ModelError, match="modified or damaged after installation"):
        resolve_model("tiny")

    install.install_model("tiny", progress=False)  # not intact any more: downloads again
    assert len(model_server.requests) == 2
    assert resolve_model("tiny").archive_sha256 == sha256_of_file(tiny_model_zip)


def test_archive_changed_upstream_after_first_install_is_refused(model_server, tiny_model_zip, rootlets_home,
                                                                  tmp_path):
    """Trust on first use: published releases have no checksum, so the first one seen is the reference."""
    write_lab_card(rootlets_home, "tiny", [_serve(model_server, tiny_model_zip)])
    install.install_model("tiny", progress=False)
    first = install.read_installation("tiny").provenance

    other_root = tmp_path / "other"
    tiny_model.build_model_folder(other_root, folds=("0",))
    _serve(model_server, tiny_model.zip_folder(other_root, tmp_path / "other.zip"))

    result = run_cli("-install", "tiny", "-overwrite", env_home=rootlets_home)

    assert result.returncode == 1 and "Checksum mismatch" in result.stderr and "recorded at first install" in result.stderr
    assert install.read_installation("tiny").provenance == first
    resolve_model("tiny")  # the first installation is intact and still usable


def test_install_from_local_zip_and_url(model_server, tiny_model_zip, rootlets_home):
    result = run_cli("-install-from", tiny_model_zip, env_home=rootlets_home)
    assert result.returncode == 0, result.stderr
    assert install.read_installation("tiny-rootlets").provenance["source"] == str(tiny_model_zip.resolve())

    url = _serve(model_server, tiny_model_zip, "lab-model-v2.zip")
    result = run_cli("-install-from", url, env_home=rootlets_home)
    assert result.returncode == 0, result.stderr
    assert install.read_installation("lab-model-v2").provenance["source"] == url
    listing = run_cli("-list-models", env_home=rootlets_home).stdout
    assert "tiny-rootlets [installed]" in listing and "lab-model-v2 [installed]" in listing


def test_install_from_archive_of_a_registry_model_uses_its_name(tiny_model_zip, rootlets_home, tmp_path):
    write_lab_card(rootlets_home, "tiny", ["https://example.invalid/models/tiny-rootlets.zip"])
    folder = install.install_from(str(tiny_model_zip), progress=False)
    assert folder == rootlets_home / "models" / "tiny"


def test_install_from_missing_file(rootlets_home, tmp_path):
    result = run_cli("-install-from", tmp_path / "nope.zip", env_home=rootlets_home)
    assert result.returncode == 1 and "nope.zip does not exist" in result.stderr


def test_unknown_model_name_for_install(rootlets_home):
    result = run_cli("-install", "no-such-model", env_home=rootlets_home)
    assert result.returncode == 1 and "Unknown model 'no-such-model'" in result.stderr
