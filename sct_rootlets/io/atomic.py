"""Write files so that a reader never sees a partial one: temp file in the target folder, then rename."""

import contextlib
import os
import tempfile
from pathlib import Path

from sct_rootlets.errors import OutputError


def full_suffix(path: Path) -> str:
    """'.nii.gz' for 'a.nii.gz': writers such as nibabel choose the format from the whole extension."""
    return ".nii.gz" if path.name.endswith(".nii.gz") else path.suffix


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_paths(targets, *, overwrite: bool = False):
    """Yield one temp path per target, in the target's folder; rename all of them into place on success.

    On any exception every temp file is removed and no target is touched, so a set of outputs (an image and
    its sidecar) appears together or not at all. Renamed files get the usual umask-based permissions, not
    mkstemp's private 0600.
    """
    targets = [Path(t) for t in targets]
    temps = []
    try:
        for target in targets:
            if target.exists() and not overwrite:
                raise OutputError(f"Output {target} already exists; use -overwrite to replace it.")
            try:
                fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=full_suffix(target),
                                           dir=target.parent)
            except OSError as exc:
                raise OutputError(f"Cannot write in output folder {target.parent}: {exc.strerror}.") from None
            os.close(fd)
            temps.append(Path(tmp))
        yield temps
        mode = 0o666 & ~_current_umask()
        for tmp, target in zip(temps, targets):
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        temps = []
    finally:
        for tmp in temps:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
