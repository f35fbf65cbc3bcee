"""`-viewer fsleyes|itksnap`: the session's images opened one after the other in a desktop viewer instead.

As in manual_correction.py: the label map to correct is first put in its place in OUT (a copy of the prediction when
there is no correction yet; the prediction itself is never opened for writing), the viewer is started on the image
and that file and waited for. When the file changed, it is checked and rewritten as the browser's saves are (the
image's grid, label values) and its sidecar gains the `Manual` entry of the rater (the version before is kept under
`OUT/review/previous/`); an unchanged copy of the prediction is removed again.
"""

import datetime
import logging
import shlex
import shutil
import subprocess
from typing import Callable

from sct_rootlets.errors import RootletsError
from sct_rootlets.io.atomic import atomic_paths
from sct_rootlets.review.items import ReviewFolders, ReviewItem
from sct_rootlets.review.saving import (CorrectionWriter, UploadRefused, clean_rater, file_version,
                                         keep_previous_version)

logger = logging.getLogger(__name__)

VIEWERS = {"fsleyes": ("fsleyes", "FSLeyes"), "itksnap": ("itksnap", "ITK-SNAP")}


def viewer_command(viewer: str, item: ReviewItem) -> list:
    executable = shutil.which(VIEWERS[viewer][0])
    if executable is None:
        raise RootletsError(f"{VIEWERS[viewer][1]} is not installed (no `{VIEWERS[viewer][0]}` on the PATH); install "
                            f"it, or review in the browser without -viewer.")
    if viewer == "itksnap":
        return [executable, "-g", str(item.image.path), "-s", str(item.correction)]
    return [executable, str(item.image.path), str(item.correction), "-ot", "label", "-o"]


def _prepare(item: ReviewItem, folders: ReviewFolders) -> None:
    """Put the prediction in the correction's place (with its sidecar) when there is no correction yet."""
    if item.correction.is_file():
        return
    targets = [folders.writable(path) for path in
               [item.correction] + ([item.correction_sidecar] if item.prediction_sidecar else [])]
    with atomic_paths(targets) as temps:
        shutil.copyfile(item.prediction, temps[0])
        if item.prediction_sidecar:
            shutil.copyfile(item.prediction_sidecar, temps[1])


def correct_in_viewer(items: list, writer: CorrectionWriter, *, viewer: str, rater: str,
                      run: Callable = subprocess.run, echo: Callable[[str], None] = print) -> int:
    """Open each item in the viewer, one after the other; return how many files the viewer changed."""
    rater = clean_rater(rater, required=False)
    changed = 0
    for item in items:
        command = viewer_command(viewer, item)
        existed = item.correction.is_file()
        before_bytes = item.correction.read_bytes() if existed else None
        _prepare(item, writer.folders)
        before = file_version(item.correction)
        echo(shlex.join(command))
        run(command, check=False)
        if file_version(item.correction) == before:
            logger.info("%s unchanged", item.correction)
            if not existed:  # an uncorrected copy of the prediction must not pass for a correction
                item.correction.unlink(missing_ok=True)
                item.correction_sidecar.unlink(missing_ok=True)
            continue
        if not rater:
            raise RootletsError("Give your name with -rater: the sidecar of a corrected file records its rater.")
        corrected = item.correction.read_bytes()
        if existed:  # keep the version the viewer replaced, as the browser's saves do
            keep_previous_version(item, writer.folders, datetime.datetime.now().astimezone(), before_bytes)
        try:
            writer.save(item, corrected, base_version=file_version(item.correction), rater=rater,
                        keep_previous=False)
        except UploadRefused as exc:
            raise RootletsError(f"{item.correction} as the viewer saved it: {exc}") from None
        changed += 1
    return changed
