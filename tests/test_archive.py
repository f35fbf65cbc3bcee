"""Safe unpacking: entries that would escape the target folder, links and zip bombs are refused up front."""

import stat
import zipfile

import pytest

from sct_rootlets.store import archive
from sct_rootlets.errors import InstallError


def _zip(path, entries):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return path


def _symlink_entry(name, target):
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target


@pytest.mark.parametrize("entry, problem", [
    (("/etc/cron.d/evil", "x"), "absolute path"),
    (("C:/Windows/evil", "x"), "absolute path"),
    (("model/../../evil", "x"), "leaves the archive folder"),
    (("model\\..\\..\\evil", "x"), "leaves the archive folder"),
    (_symlink_entry("model/link", "/etc/passwd"), "symbolic link"),
])
def test_unsafe_entries_are_refused_before_anything_is_written(tmp_path, entry, problem):
    path = _zip(tmp_path / "a.zip", [("model/ok.txt", "fine"), entry])
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(InstallError, match=problem):
        archive.extract_zip(path, dest)
    assert list(dest.iterdir()) == []


def test_zip_bomb_is_refused(tmp_path):
    path = _zip(tmp_path / "bomb.zip", [("zeros.bin", b"\0" * (80 << 20))])
    assert path.stat().st_size < 1 << 20
    with pytest.raises(InstallError, match="claims to expand to"):
        archive.check_zip(path)


def test_absurd_declared_size_is_refused(tmp_path, monkeypatch):
    path = _zip(tmp_path / "a.zip", [("model/a.bin", b"abc" * 1000)])
    monkeypatch.setattr(archive, "MAX_UNPACKED_BYTES", 100)
    with pytest.raises(InstallError, match="claims to expand to"):
        archive.check_zip(path)


def test_not_a_zip(tmp_path):
    path = tmp_path / "model.zip"
    path.write_text("<html>404 page served as a zip</html>")
    with pytest.raises(InstallError, match="not a valid zip archive"):
        archive.check_zip(path)


def test_good_archive_is_extracted_with_its_folders(tmp_path):
    path = _zip(tmp_path / "a.zip", [("release/trainer/plans.json", "{}"), ("release/trainer/fold_0/c.pth", b"w")])
    dest = tmp_path / "dest"
    dest.mkdir()
    archive.extract_zip(path, dest)
    assert (dest / "release/trainer/plans.json").read_text() == "{}"
    assert (dest / "release/trainer/fold_0/c.pth").read_bytes() == b"w"
