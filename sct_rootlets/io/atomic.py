"""Write files so that a reader never sees a partial one: temp file in the target folder, then rename.

A disk that refuses the write (full, over quota, read-only, no permission) is the user's to fix, not a bug: the
writers here turn it into an `OutputError` that names the file, its folder and what to do, after removing
everything they had started to write.
"""

import contextlib
import errno
import os
import secrets
from pathlib import Path
from typing import Optional

from sct_rootlets.errors import OutputError

#: OSErrors by which storage refuses a write; for the first two, freeing space there is a fix too.
OUT_OF_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
REFUSAL_ERRNOS = OUT_OF_SPACE_ERRNOS | {errno.EROFS, errno.EACCES, errno.EPERM}


def full_suffix(path: Path) -> str:
    """'.nii.gz' for 'a.nii.gz': writers such as nibabel choose the format from the whole extension."""
    return ".nii.gz" if path.name.endswith(".nii.gz") else path.suffix


#: Tries at a free temp name before giving up (each name has 64 random bits: a clash is a broken random source).
_TEMP_NAME_TRIES = 100


def refusal_reason(exc: BaseException) -> Optional[str]:
    """Why the storage refused a write, in the OS's words ('no space left on device', 'read-only file system'),
    or None when `exc` is no such refusal (a bug, a missing file, a failing disk)."""
    if isinstance(exc, OSError) and exc.errno in REFUSAL_ERRNOS:
        return os.strerror(exc.errno).lower()
    return None


def existing_folder(path: Path) -> Path:
    """`path` if it is a folder, else its nearest existing parent folder: where a refused write happened."""
    folder = Path(os.path.abspath(path))
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    return folder


def refusal_message(path: Path, exc: OSError, *, what: str = "", elsewhere: str = "choose another output folder"
                    ) -> str:
    """'Cannot <what>: <reason> (<folder>); [free some space there or ]<elsewhere>.' `what` defaults to
    'write <path>'."""
    advice = f"free some space there or {elsewhere}" if exc.errno in OUT_OF_SPACE_ERRNOS else elsewhere
    return f"Cannot {what or f'write {path}'}: {refusal_reason(exc)} ({existing_folder(path)}); {advice}."


@contextlib.contextmanager
def refused_writes(path, *, what: str = "", elsewhere: str = "choose another output folder", error=OutputError):
    """Raise `error` with `refusal_message` for a refused write in the block; other OSErrors pass unchanged.
    Cleaning up is the block's own business (its `finally`/`except` run before this turns the error)."""
    try:
        yield
    except OSError as exc:
        if refusal_reason(exc) is None:
            raise
        raise error(refusal_message(Path(path), exc, what=what, elsewhere=elsewhere)) from None


def _create_temp(folder: Path, prefix: str, suffix: str) -> Path:
    """A new empty file in `folder`, created with mode 0666 so that the kernel applies the umask (and any default
    ACL) as for any file the user creates; the process umask itself is never read nor changed (other threads write
    at the same time)."""
    for _ in range(_TEMP_NAME_TRIES):
        path = folder / f"{prefix}{secrets.token_hex(8)}{suffix}"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return path
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(folder))


def _make_folders(folder: Path, created: list) -> None:
    """Create `folder` and its missing parents, each put first in `created` (which so lists the deepest first,
    the order to remove them in)."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for new in reversed(missing):
        new.mkdir()
        created.insert(0, new)


@contextlib.contextmanager
def atomic_paths(targets, *, overwrite: bool = False):
    """Yield one temp path per target, in the target's folder; rename all of them into place on success.

    Missing folders are created. On any exception every temp file and created folder is removed and no target is
    touched, so a set of outputs (an image and its sidecar) appears together or not at all; a refused write (see
    `refusal_reason`) then becomes an OutputError naming the target. Files get the permissions any new file of the
    user gets (umask, default ACLs), not a private 0600.
    """
    targets = [Path(t) for t in targets]
    for target in targets:
        if target.exists() and not overwrite:
            raise OutputError(f"Output {target} already exists; use -overwrite to replace it.")
    temps, created, current = [], [], targets[0] if targets else Path(".")
    try:
        for target in targets:
            current = target
            try:
                _make_folders(target.parent, created)
                temps.append(_create_temp(target.parent, f".{target.name}.", full_suffix(target)))
            except OSError as exc:
                if refusal_reason(exc):
                    raise
                raise OutputError(f"Cannot write in output folder {target.parent}: {exc.strerror or exc}.") from None
        try:
            yield temps
        except OSError as exc:
            # The writer failed on one of the temp files: name its target (a stream's close names none).
            current = next((target for tmp, target in zip(temps, targets)
                            if exc.filename and Path(exc.filename) == tmp), targets[0])
            raise
        for tmp, target in zip(temps, targets):
            current = target
            os.replace(tmp, target)
        temps, created = [], []
    except OSError as exc:
        _remove(temps, created)  # first, so that the message names a folder that is still there
        if refusal_reason(exc) is None:
            raise
        raise OutputError(refusal_message(current, exc)) from None
    finally:
        _remove(temps, created)


def _remove(temps: list, folders: list) -> None:
    """Remove the temp files, then the (emptied) folders; both lists end empty."""
    for tmp in temps:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()
    temps.clear()
    folders.clear()
