"""Full and read-only disks: every writer ends in one sentence and exit code 1 and leaves nothing behind; a run that
needs to write nothing in the read-only place goes on.

Each disk is a real tmpfs where the test can mount one (as root, where the kernel lets it), else a folder in which
writes fail as they would on such a disk: the OSError is raised by Python's lowest file-writing calls (`open`,
`os.open`, `os.mkdir`, `os.access`). The same test runs either way, never skipped; SCT_ROOTLETS_TEST_NO_MOUNT=1
forces the injected disks where mounting works.
"""

import builtins
import errno
import io
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import ras_image, write_labelled_case

from sct_rootlets.errors import InstallError, OutputError
from sct_rootlets.store import install

NO_MOUNT_ENV_VAR = "SCT_ROOTLETS_TEST_NO_MOUNT"
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT


@dataclass(frozen=True)
class Disk:
    """A folder on a full or read-only disk; `mounted`: a real tmpfs, else one imitated by injected OSErrors."""
    folder: Path
    mounted: bool

    def contents(self) -> set:
        """Every file and folder below the disk's folder, relative to it."""
        return {path.relative_to(self.folder) for path in self.folder.rglob("*")}


def _under(path, folders) -> bool:
    if not isinstance(path, (str, bytes, os.PathLike)):
        return False  # a file descriptor
    absolute = os.path.abspath(os.fsdecode(path))
    return any(absolute == str(folder) or absolute.startswith(f"{folder}{os.sep}") for folder in folders)


def _os_error(code: int, path) -> OSError:
    return OSError(code, os.strerror(code), os.fsdecode(path))


class _FullFile:
    """An open file on a full disk: it opened, but no write gets through."""

    def __init__(self, real):
        self._real = real

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    writelines = write

    def __getattr__(self, name):
        return getattr(self._real, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._real.close()


def _inject(monkeypatch, code: int, *folders: Path) -> None:
    """Make writes below `folders` fail as on a full disk (ENOSPC: files and folders can be created, nothing written
    to them) or a read-only one (EROFS: nothing created, nothing opened for writing, `os.access` says so)."""
    real_open, real_os_open, real_mkdir, real_access = builtins.open, os.open, os.mkdir, os.access
    read_only = code == errno.EROFS

    def fake_open(file, mode="r", *args, **kwargs):
        if _under(file, folders) and any(flag in mode for flag in "wax+"):
            if read_only:
                raise _os_error(code, file)
            return _FullFile(real_open(file, mode, *args, **kwargs))
        return real_open(file, mode, *args, **kwargs)

    def fake_os_open(path, flags, *args, **kwargs):
        if read_only and flags & _WRITE_FLAGS and _under(path, folders):
            raise _os_error(code, path)
        return real_os_open(path, flags, *args, **kwargs)

    def fake_mkdir(path, *args, **kwargs):
        if read_only and _under(path, folders):
            raise _os_error(code, path)
        return real_mkdir(path, *args, **kwargs)

    def fake_access(path, mode, *args, **kwargs):
        if read_only and mode & os.W_OK and _under(path, folders):
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)  # pathlib's Path.open calls io.open
    monkeypatch.setattr(os, "open", fake_os_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)
    monkeypatch.setattr(os, "access", fake_access)


def _mount_tmpfs(folder: Path, size: str) -> bool:
    """Mount a tmpfs of `size` on `folder`; False where this process may not."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.environ.get(NO_MOUNT_ENV_VAR) or os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True)
    return mounted.returncode == 0


def _unmount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=True)


def _fill(folder: Path) -> None:
    """Write until the disk is full."""
    with open(folder / "filler", "wb", buffering=0) as stream:
        try:
            while True:
                stream.write(bytes(4096))
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc


@pytest.fixture
def full_disk(tmp_path, monkeypatch):
    """A folder on a full disk (a filled tmpfs, or injected ENOSPC)."""
    folder = tmp_path / "full"
    if _mount_tmpfs(folder, "256k"):
        _fill(folder)
        yield Disk(folder, mounted=True)
        _unmount(folder)
    else:
        _inject(monkeypatch, errno.ENOSPC, folder)
        yield Disk(folder, mounted=False)


@pytest.fixture
def read_only_disk(tmp_path, monkeypatch):
    """A callable: `make(fill)` gives a read-only disk after `fill(folder)` has put files on it (a tmpfs remounted
    read-only, or injected EROFS)."""
    made = []

    def make(fill=lambda folder: None) -> Disk:
        folder = tmp_path / "read_only"
        mounted = _mount_tmpfs(folder, "64m")
        if mounted:
            made.append(folder)
        fill(folder)
        if mounted:
            remounted = subprocess.run(["mount", "-o", "remount,ro", str(folder)], capture_output=True)
            mounted = remounted.returncode == 0
        if not mounted:
            _inject(monkeypatch, errno.EROFS, folder)
        return Disk(folder, mounted=mounted)

    yield make
    for folder in made:
        _unmount(folder)


@pytest.fixture
def inputs(tmp_path):
    """An image, a cord mask and a rootlets map (levels 3 and 6) on its grid, outside every test disk."""
    return write_labelled_case(tmp_path / "inputs" / "sub-01" / "anat", "sub-01")


def _one_sentence(code: int, capsys, prog: str, *expected: str) -> str:
    """The error line of a command that failed as it should: exit code 1, one line on stderr, no traceback."""
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: error: Cannot "), lines[0]
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


# --- A full disk ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["out.nii.gz", "new_folder/out.nii.gz"])
def test_label_map_on_a_full_disk(name, full_disk, inputs, tiny_trainer_dir, capsys):
    from sct_rootlets.cli.deepseg_rootlets import main

    before = full_disk.contents()
    output = full_disk.folder / name
    code = main(["-i", str(inputs["image"]), "-o", str(output), "-model", str(tiny_trainer_dir), "-region", "whole",
                 "-device", "cpu", "-v", "0"])
    _one_sentence(code, capsys, "sct_deepseg_rootlets", f"Cannot write {output}: no space left on device "
                  f"({full_disk.folder}); free some space there or choose another output folder.")
    assert full_disk.contents() == before, "no temp file, partial image, sidecar or new folder left behind"


def test_spinal_levels_on_a_full_disk(full_disk, inputs, capsys):
    from sct_rootlets.cli.rootlets_levels import main

    before = full_disk.contents()
    code = main(["-i", str(inputs["rootlets"]), "-s", str(inputs["cord"]), "-ofolder", str(full_disk.folder / "levels"),
                 "-v", "0"])
    _one_sentence(code, capsys, "sct_rootlets_levels", str(full_disk.folder), "no space left on device")
    assert full_disk.contents() == before


def test_dilated_labels_on_a_full_disk(full_disk, inputs, capsys):
    from sct_rootlets.cli.rootlets_dilate import main

    before = full_disk.contents()
    output = full_disk.folder / "dilated.nii.gz"
    code = main(["-i", str(inputs["rootlets"]), "-dilate", "1", "-o", str(output), "-v", "0"])
    _one_sentence(code, capsys, "sct_rootlets_dilate", f"Cannot write {output}: no space left on device")
    assert full_disk.contents() == before


def test_metrics_table_on_a_full_disk(full_disk, inputs, capsys):
    from sct_rootlets.cli.rootlets_metrics import main

    before = full_disk.contents()
    output = full_disk.folder / "metrics.csv"
    code = main(["-gt", str(inputs["rootlets"]), "-pred", str(inputs["rootlets"]), "-o", str(output), "-v", "0"])
    _one_sentence(code, capsys, "sct_rootlets_metrics", f"Cannot write {output}: no space left on device")
    assert full_disk.contents() == before


def test_qc_entry_on_a_full_disk(full_disk, inputs, capsys):
    from sct_rootlets.cli.rootlets_qc import main

    qc_dir = full_disk.folder / "qc"
    code = main(["-i", str(inputs["image"]), "-s", str(inputs["rootlets"]), "-cord", str(inputs["cord"]),
                 "-qc", str(qc_dir), "-v", "0"])
    _one_sentence(code, capsys, "sct_rootlets_qc", f"Cannot add a QC entry to {qc_dir}: no space left on device",
                  "choose another QC folder")
    assert not [path for path in qc_dir.rglob("*") if not path.is_dir()], "no picture, record or report written"


def test_model_install_on_a_full_disk(full_disk, tiny_model_zip, monkeypatch):
    home = full_disk.folder / "home"
    monkeypatch.setenv("SCT_ROOTLETS_HOME", str(home))
    with pytest.raises(InstallError) as raised:
        install.install_from(str(tiny_model_zip), progress=False)
    message = str(raised.value)
    assert "\n" not in message and str(home) in message
    assert "space" in message  # the real disk fails the free-space check, the imitated one the writes
    assert not [path for path in home.rglob("*") if not path.is_dir() and not path.name.endswith(".lock")]
    assert install.installed_names() == []


def test_atomic_write_on_a_full_disk_raises_output_error(full_disk):
    """The library's side: a set of outputs written together, none left when the disk fills."""
    from sct_rootlets.io.atomic import atomic_paths

    before = full_disk.contents()
    targets = [full_disk.folder / "a" / "image.nii.gz", full_disk.folder / "a" / "image.json"]
    with pytest.raises(OutputError, match="no space left on device"):
        with atomic_paths(targets) as (image, sidecar):
            nib.save(ras_image(), image)
            sidecar.write_text("{}")
    assert full_disk.contents() == before


# --- A read-only home -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("network", ["offline", "online"])
def test_plain_run_with_a_read_only_home(network, read_only_disk, inputs, tmp_path, monkeypatch, capsys):
    """A run without -model installs a model first: it cannot, and says where models go and how to point elsewhere."""
    from sct_rootlets.cli.deepseg_rootlets import main
    from sct_rootlets.store.resolve import OFFLINE_ENV_VAR

    disk = read_only_disk()
    home = disk.folder / "home"
    monkeypatch.setenv("SCT_ROOTLETS_HOME", str(home))
    if network == "online":  # the default model would be downloaded first, without SCT_ROOTLETS_OFFLINE
        monkeypatch.delenv(OFFLINE_ENV_VAR)
    out = tmp_path / "out"
    out.mkdir()
    code = main(["-i", str(inputs["image"]), "-o", str(out / "rootlets.nii.gz"), "-device", "cpu", "-v", "0"])
    line = _one_sentence(code, capsys, "sct_deepseg_rootlets")
    assert line.endswith(f"error: Cannot create the model folder {home / 'models'} (read-only file system): set "
                         f"SCT_ROOTLETS_HOME to a writable folder, or give a model folder with -model FOLDER."), line
    assert list(out.iterdir()) == []
    assert disk.contents() == set()


@pytest.mark.parametrize("action", ["-install", "-install-from"])
def test_install_with_a_read_only_home(action, read_only_disk, tiny_model_zip, monkeypatch, capsys):
    from sct_rootlets.cli.deepseg_rootlets import main

    disk = read_only_disk()
    home = disk.folder / "home"
    monkeypatch.setenv("SCT_ROOTLETS_HOME", str(home))
    what = "sct-rootlets-cord" if action == "-install" else str(tiny_model_zip)
    code = main([action, what, "-v", "0"])
    _one_sentence(code, capsys, "sct_deepseg_rootlets",
                  f"Cannot install {Path(what).name} in {home / 'models'} (read-only file system): set "
                  f"SCT_ROOTLETS_HOME to a writable folder.")
    assert disk.contents() == set()


def test_model_folder_run_that_needs_the_cord_model_with_a_read_only_home(read_only_disk, inputs, tiny_model_root,
                                                                          tmp_path, monkeypatch, capsys):
    """The default fast region needs a cord mask: the cord model cannot be installed in a read-only home, and the
    sentence names the other way (-s)."""
    from sct_rootlets.cli.deepseg_rootlets import main

    disk = read_only_disk()
    home = disk.folder / "home"
    monkeypatch.setenv("SCT_ROOTLETS_HOME", str(home))
    out = tmp_path / "out"
    out.mkdir()
    code = main(["-i", str(inputs["image"]), "-o", str(out / "rootlets.nii.gz"), "-model", str(tiny_model_root),
                 "-device", "cpu", "-v", "0"])
    _one_sentence(code, capsys, "sct_deepseg_rootlets",
                  f"Cannot install sct-rootlets-cord in {home / 'models'} (read-only file system): set "
                  f"SCT_ROOTLETS_HOME to a writable folder, or give a cord mask with -s.")
    assert list(out.iterdir()) == []
    assert disk.contents() == set()


def test_model_folder_run_goes_on_with_a_read_only_home(read_only_disk, inputs, tiny_model_root, tmp_path,
                                                        monkeypatch, capsys):
    """Nothing needs the home: a model folder, the whole image. With OpenVINO the ONNX export can be cached neither
    beside the read-only model nor in the home's cache: it is made in a temporary folder and not kept."""
    from sct_rootlets.cli.deepseg_rootlets import main

    disk = read_only_disk(lambda folder: shutil.copytree(tiny_model_root, folder / "model"))
    before = disk.contents()
    monkeypatch.setenv("SCT_ROOTLETS_HOME", str(disk.folder / "home"))
    output = tmp_path / "out" / "rootlets.nii.gz"
    code = main(["-i", str(inputs["image"]), "-o", str(output), "-model", str(disk.folder / "model"), "-region",
                 "whole", "-engine", "openvino", "-device", "cpu", "-v", "0"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "Traceback" not in err
    assert nib.load(output).shape == nib.load(inputs["image"]).shape
    assert disk.contents() == before


def test_a_refused_write_that_no_writer_turned_is_still_one_sentence(capsys):
    """The command line's safety net for writers outside `sct_rootlets.io.atomic` (logs, training folders)."""
    import argparse

    from sct_rootlets.cli.common import add_common_arguments, run_command

    parser = argparse.ArgumentParser(prog="sct_rootlets_demo")
    add_common_arguments(parser)

    def run(args, argv):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), "/quota/run.log")

    assert run_command(parser, run, ["-v", "0"]) == 1
    assert capsys.readouterr().err == "sct_rootlets_demo: error: Disk quota exceeded: /quota/run.log.\n"


def test_onnx_cache_goes_to_the_home_when_the_model_folder_is_read_only(read_only_disk, inputs, tiny_model_root,
                                                                         tmp_path, monkeypatch, capsys):
    """README: the first OpenVINO run caches each checkpoint's ONNX export beside the checkpoint, named by the
    checkpoint's SHA-256, "or in $SCT_ROOTLETS_HOME/cache/ when the model folder is read-only"; a later run reuses
    it. (A real read-only mount where the test may mount, so this holds as root too, where chmod stops nothing.)"""
    import hashlib

    from sct_rootlets.cli.deepseg_rootlets import main

    disk = read_only_disk(lambda folder: shutil.copytree(tiny_model_root, folder / "model"))
    before = disk.contents()
    home = tmp_path / "home"
    monkeypatch.setenv("SCT_ROOTLETS_HOME", str(home))
    checkpoints = sorted((disk.folder / "model").rglob("checkpoint_final.pth"))
    assert len(checkpoints) == 2
    expected = {f"checkpoint_final.{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}.onnx"
                for path in checkpoints}

    def run(name):
        return main(["-i", str(inputs["image"]), "-o", str(tmp_path / name), "-model", str(disk.folder / "model"),
                     "-region", "whole", "-engine", "openvino", "-device", "cpu", "-v", "0"])

    assert run("first.nii.gz") == 0, capsys.readouterr().err
    cache = home / "cache"
    assert {path.name for path in cache.glob("*.onnx")} == expected
    stamps = {path: path.stat().st_mtime_ns for path in cache.glob("*.onnx")}
    assert disk.contents() == before, "nothing written beside the read-only model"
    assert run("second.nii.gz") == 0, capsys.readouterr().err
    assert {path: path.stat().st_mtime_ns for path in cache.glob("*.onnx")} == stamps, "the cache is reused"
    np.testing.assert_array_equal(np.asanyarray(nib.load(tmp_path / "first.nii.gz").dataobj),
                                  np.asanyarray(nib.load(tmp_path / "second.nii.gz").dataobj))
