"""Safe unpacking of model archives (zip): nothing may land outside the target folder or fill the disk."""

import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from sct_rootlets.errors import InstallError
from sct_rootlets.io.atomic import refusal_reason

#: A model archive expands to a few GB at most (5 folds of a large nnU-Net); more is a zip bomb or an error.
MAX_UNPACKED_BYTES = 32 << 30
MAX_ENTRIES = 10_000
#: Checkpoints barely compress; a ratio above this is a zip bomb (counted only past 64 MB expanded).
MAX_COMPRESSION_RATIO = 100
_COPY_BYTES = 1 << 20


def _entry_problem(info: zipfile.ZipInfo):
    """Why an entry is unsafe to extract, or None."""
    name = info.filename.replace("\\", "/")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return f"absolute path {info.filename!r}"
    if ".." in parts:
        return f"path {info.filename!r} leaves the archive folder"
    if stat.S_ISLNK(info.external_attr >> 16):
        return f"symbolic link {info.filename!r}"
    if info.flag_bits & 0x1:
        return f"encrypted entry {info.filename!r}"
    return None


def check_zip(archive: Path) -> list:
    """Validate every entry before anything is written; return the entries. Raise InstallError if unsafe."""
    try:
        with zipfile.ZipFile(archive) as zf:
            entries = zf.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise InstallError(f"{archive.name} is not a valid zip archive ({exc}).") from None
    if len(entries) > MAX_ENTRIES:
        raise InstallError(f"{archive.name} holds {len(entries)} entries; a model archive holds far fewer.")
    for info in entries:
        problem = _entry_problem(info)
        if problem:
            raise InstallError(f"Refusing to unpack {archive.name}: it contains an unsafe entry ({problem}).")
    expanded = sum(info.file_size for info in entries)
    packed = max(1, sum(info.compress_size for info in entries))
    if expanded > MAX_UNPACKED_BYTES or (expanded > 64 << 20 and expanded / packed > MAX_COMPRESSION_RATIO):
        raise InstallError(f"Refusing to unpack {archive.name}: it claims to expand to {expanded / 1e9:.1f} GB "
                           f"from {packed / 1e9:.2f} GB.")
    return entries


def extract_zip(archive: Path, dest: Path) -> None:
    """Extract a checked archive into the existing folder `dest`, enforcing each entry's declared size."""
    entries = check_zip(archive)
    free = shutil.disk_usage(dest).free
    expanded = sum(info.file_size for info in entries)
    if expanded > free:
        raise InstallError(f"Not enough disk space to unpack {archive.name}: {expanded / 1e6:.0f} MB needed, "
                           f"{free / 1e6:.0f} MB free in {dest}.")
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in entries:
                target = dest.joinpath(*PurePosixPath(info.filename.replace("\\", "/")).parts)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                _copy_entry(zf, info, target)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as exc:
        if refusal_reason(exc):
            raise  # a full or read-only disk, not a corrupt archive: the installer says so
        raise InstallError(f"{archive.name} is corrupt and cannot be unpacked ({exc}).") from None


def _copy_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> None:
    written = 0
    with zf.open(info) as source, open(target, "wb") as sink:
        for block in iter(lambda: source.read(_COPY_BYTES), b""):
            written += len(block)
            if written > info.file_size:
                raise ValueError(f"{info.filename} expands beyond its declared size")
            sink.write(block)
