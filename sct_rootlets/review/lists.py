"""Lists in and out of a review session, and the session's marks.

In: SCT's viewer's "Save Fails" file `qc_fail.yml` (our entries land under `FILE_KIND_UNKNOWN`, SCT's segmentations
under `FILES_SEG`, and lists written for manual_correction.py under `FILES_ROOTLETS`); our viewer's
`qc_fail_subjects.txt` is a list of `sub-XX[/ses-YY]` names, taken by `-include` as `sct_rootlets_batch` takes it.

Out: `qc_fail.yml` with the images marked "fail" under `FILES_ROOTLETS`, as lists of image paths relative to the
dataset (`sub-01/anat/sub-01_T2w.nii.gz`), the form NeuroPoly's manual_correction.py `-config` reads: a YAML
mapping of `FILES_*` keys to lists of image paths, of which it keeps the file names and finds each image at
`<-path-img>/<sub>/[<ses>/]anat/<name>`.
"""

import datetime
import json
from pathlib import Path

import yaml

from sct_rootlets.errors import RootletsError
from sct_rootlets.io.atomic import atomic_paths

#: Keys of a qc_fail.yml whose images are rootlets (or segmentations) to review.
READ_KEYS = ("FILES_ROOTLETS", "FILES_SEG", "FILE_KIND_UNKNOWN")
WRITE_KEY = "FILES_ROOTLETS"
MARKS = ("pass", "fail", "artifact")
MARKS_FILE = "marks.json"
QC_FAIL_FILE = "qc_fail.yml"


def read_qc_fail_yml(path) -> list:
    """The image paths listed under FILES_ROOTLETS, FILES_SEG and FILE_KIND_UNKNOWN, in file order, once each."""
    path = Path(path)
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RootletsError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    except yaml.YAMLError as exc:
        raise RootletsError(f"{path} is not valid YAML: {exc}") from None
    if content is None:
        return []
    if not isinstance(content, dict):
        raise RootletsError(f"{path} is not a qc_fail.yml: it should map keys such as FILES_SEG to lists of images.")
    listed = []
    for key in READ_KEYS:
        entries = content.get(key) or []
        if not isinstance(entries, list):
            raise RootletsError(f"{path}: {key} should be a list of image paths.")
        listed += [str(entry) for entry in entries if str(entry) not in listed]
    if not listed and not any(key in content for key in READ_KEYS):
        raise RootletsError(f"{path} lists no image under {', '.join(READ_KEYS)}.")
    return listed


def qc_fail_yml_text(image_paths, *, comment: str = "") -> str:
    """A qc_fail.yml listing `image_paths` under FILES_ROOTLETS (indent and layout as SCT's viewer writes)."""
    lines = [f"# {line}" for line in comment.splitlines()]
    lines.append(f"{WRITE_KEY}:" if image_paths else f"{WRITE_KEY}: []")
    lines += [f"    - {path}" for path in image_paths]
    text = "\n".join(lines) + "\n"
    if yaml.safe_load(text).get(WRITE_KEY, None) != (list(image_paths) or []):  # a name YAML would misread
        raise RootletsError("An image path cannot be written as plain YAML; rename it without ': ' or '#'.")
    return text


def _write_text(path: Path, text: str) -> None:
    with atomic_paths([path], overwrite=True) as (tmp,):
        tmp.write_text(text, encoding="utf-8")


class Marks:
    """pass / fail / artifact per image (by its path in the dataset), kept in `OUT/review/marks.json`, with
    the fails also written to `OUT/review/qc_fail.yml` after every change."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / MARKS_FILE
        self.qc_fail_path = self.folder / QC_FAIL_FILE
        self.marks = {}
        if self.path.is_file():
            try:
                self.marks = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise RootletsError(f"Cannot read the review marks {self.path}: {exc}; move it away to start "
                                    f"afresh.") from None

    def get(self, name: str) -> str:
        return self.marks.get(name, {}).get("mark", "")

    def set(self, name: str, mark: str, rater: str = "") -> None:
        if mark and mark not in MARKS:
            raise RootletsError(f"Unknown mark {mark!r}; use one of {', '.join(MARKS)} (or none).")
        if mark:
            self.marks[name] = {"mark": mark, "rater": rater,
                                "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
        else:
            self.marks.pop(name, None)
        _write_text(self.path, json.dumps(self.marks, indent=2, sort_keys=True) + "\n")
        self.write_qc_fail()

    def fails(self) -> list:
        return sorted(name for name, record in self.marks.items() if record.get("mark") == "fail")

    def qc_fail_text(self) -> str:
        return qc_fail_yml_text(self.fails(), comment="written by sct_rootlets_review: the images marked 'fail'; "
                                                      "image paths relative to the dataset (manual_correction.py "
                                                      "-config)")

    def write_qc_fail(self) -> Path:
        _write_text(self.qc_fail_path, self.qc_fail_text())
        return self.qc_fail_path
