"""Lists in and out of a review session, and the session's marks.

In: SCT's viewer's "Save Fails" file `qc_fail.yml` (our entries land under `FILE_KIND_UNKNOWN`, SCT's segmentations
under `FILES_SEG`, and lists written for manual_correction.py under `FILES_ROOTLETS`, with the images it corrected
since moved to `CORR_ROOTLETS`); our viewer's `qc_fail_subjects.txt` is a list of `sub-XX[/ses-YY]` names, taken by
`-include` as `sct_rootlets_batch` takes it.

Out: `qc_fail.yml` with the images marked "fail" under `FILES_ROOTLETS`, as lists of image paths relative to the
dataset (`sub-01/anat/sub-01_T2w.nii.gz`), the form NeuroPoly's manual_correction.py `-config` reads: a YAML
mapping of `FILES_*` keys to lists of image paths, of which it keeps the file names and finds each image at
`<-path-img>/<sub>/[<ses>/]anat/<name>`. manual_correction.py rewrites that file as it goes (the corrected image's
name leaves `FILES_ROOTLETS` for `CORR_ROOTLETS`), so the file is merged, never overwritten: keys other than
`FILES_ROOTLETS` stay as they are, an image corrected since it was marked is not listed again, and a version written
by someone else (manual_correction.py drops our comment) is kept under `OUT/review/previous/<time>/` before it is
replaced.
"""

import datetime
import json
import logging
import shutil
import threading
from pathlib import Path

import yaml

from sct_rootlets.errors import RootletsError
from sct_rootlets.io.atomic import atomic_paths
from sct_rootlets.io.image import nifti_stem
from sct_rootlets.review.items import CORRECTION_SUFFIX, PREVIOUS_FOLDER, ReviewFolders

logger = logging.getLogger(__name__)

#: Keys of a qc_fail.yml whose images are rootlets (or segmentations) to review, and the keys manual_correction.py
#: moves corrected images to (`FILES_X` -> `CORR_X`), whose corrections are reviewed too.
READ_KEYS = ("FILES_ROOTLETS", "CORR_ROOTLETS", "FILES_SEG", "CORR_SEG", "FILE_KIND_UNKNOWN")
WRITE_KEY = "FILES_ROOTLETS"
CORRECTED_KEY = "CORR_ROOTLETS"
MARKS = ("pass", "fail", "artifact")
MARKS_FILE = "marks.json"
QC_FAIL_FILE = "qc_fail.yml"
COMMENT = ("written by sct_rootlets_review: the images marked 'fail' under FILES_ROOTLETS, image paths relative to "
           "the dataset (manual_correction.py -config); other keys are kept as found")


def _load_yaml(path: Path):
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RootletsError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    except yaml.YAMLError as exc:
        raise RootletsError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from None


def read_qc_fail_yml(path) -> list:
    """The image paths listed under READ_KEYS, in that order, once each; one sentence when there is none."""
    path = Path(path)
    content = _load_yaml(path)
    if not isinstance(content, dict):
        raise RootletsError(f"{path} is not a qc_fail.yml: it should map keys such as FILES_SEG to lists of images.")
    listed = []
    for key in READ_KEYS:
        entries = content.get(key) or []
        if not isinstance(entries, list):
            raise RootletsError(f"{path}: {key} should be a list of image paths.")
        listed += [str(entry) for entry in entries if str(entry) not in listed]
    present = [key for key in READ_KEYS if key in content]
    if not listed:
        why = (" and ".join(f"{key} is empty" for key in present) if present
               else f"it has none of the keys {', '.join(READ_KEYS)}")
        raise RootletsError(f"{path} lists no image to review: {why}.")
    for key in present:
        if not content[key]:
            logger.info("%s: %s is empty.", path, key)
    return listed


def qc_fail_yml_text(content: dict, comment: str = COMMENT) -> str:
    """`content` as YAML written by a safe dumper (any file name round-trips), under `comment` (the review's
    own by default: the review rewrites a file under it as its own)."""
    text = yaml.safe_dump(content, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1 << 16)
    return f"# {comment}\n{text}"


def _write_text(path: Path, text: str) -> None:
    with atomic_paths([path], overwrite=True) as (tmp,):
        tmp.write_text(text, encoding="utf-8")


def _timestamp(iso_date: str) -> float:
    """Seconds since the epoch of a mark's ISO date; 0 (older than anything) when it cannot be read."""
    try:
        return datetime.datetime.fromisoformat(str(iso_date)).timestamp()
    except ValueError:
        return 0.0


class Marks:
    """pass / fail / artifact per image (by its path in the dataset), kept in `OUT/review/marks.json`, with
    the fails also merged into `OUT/review/qc_fail.yml` after every change."""

    def __init__(self, folders: ReviewFolders):
        self.folders = folders
        self.folder = folders.review
        self.path = self.folder / MARKS_FILE
        self.qc_fail_path = self.folder / QC_FAIL_FILE
        self.marks = {}
        self._lock = threading.Lock()  # one change at a time: the server answers from several threads
        if self.path.is_file():
            try:
                self.marks = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise RootletsError(f"Cannot read the review marks {self.path}: {exc}; move it away to start "
                                    f"afresh.") from None
            if not isinstance(self.marks, dict):
                raise RootletsError(f"The review marks {self.path} are not a JSON object; move it away to start "
                                    f"afresh.")

    def get(self, name: str) -> str:
        return self.marks.get(name, {}).get("mark", "")

    def set(self, name: str, mark: str, rater: str = "") -> None:
        """Record (or, with "", remove) a mark; kept in memory only once written."""
        if mark and mark not in MARKS:
            raise RootletsError(f"Unknown mark {mark!r}; use one of {', '.join(MARKS)} (or none).")
        with self._lock:
            marks = {key: record for key, record in self.marks.items() if key != name}
            if mark:
                marks[name] = {"mark": mark, "rater": rater,
                               "date": datetime.datetime.now().astimezone().isoformat(timespec="microseconds")}
            _write_text(self.folders.writable(self.path), json.dumps(marks, indent=2, sort_keys=True) + "\n")
            self.marks = marks
            self._write_qc_fail()

    def _corrected_since_marked(self, name: str, corrected_names: set) -> bool:
        """Whether manual_correction.py lists the image as corrected and its correction in OUT is newer than the
        mark: it was corrected after it failed, and listing it again would offer to overwrite that correction."""
        if Path(name).name not in corrected_names:
            return False
        correction = self.folders.out / Path(name).parent / f"{nifti_stem(Path(name))}{CORRECTION_SUFFIX}.nii.gz"
        try:
            return correction.stat().st_mtime > _timestamp(self.marks[name].get("date"))
        except OSError:
            return False

    def _existing(self) -> tuple:
        """(text, mapping) of the qc_fail.yml on disk: (None, {}) when there is none; the mapping is {} when the
        file cannot be merged (not YAML, not a mapping), and it is then replaced (kept as a previous version)."""
        try:
            text = self.qc_fail_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None, {}
        except (OSError, UnicodeDecodeError) as exc:
            raise RootletsError(f"Cannot read {self.qc_fail_path}: {exc}.") from None
        try:
            content = yaml.safe_load(text)
        except yaml.YAMLError:
            content = None
        if not isinstance(content, dict):
            logger.warning("%s is not a YAML mapping; it is replaced (the old one is kept under %s).",
                           self.qc_fail_path, self.folder / PREVIOUS_FOLDER)
            content = {}
        return text, content

    def fails(self, corrected_names: frozenset = frozenset()) -> list:
        """The images marked 'fail', less those corrected since (see `_corrected_since_marked`)."""
        return sorted(name for name, record in self.marks.items() if record.get("mark") == "fail"
                      and not self._corrected_since_marked(name, corrected_names))

    def _merged(self, content: dict) -> dict:
        """`content` with FILES_ROOTLETS replaced by our fails (in place, or first), every other key kept."""
        corrected = content.get(CORRECTED_KEY)
        corrected_names = {Path(str(entry)).name for entry in corrected} if isinstance(corrected, list) else set()
        merged = {WRITE_KEY: None} if WRITE_KEY not in content else {}
        merged.update(content)
        merged[WRITE_KEY] = self.fails(frozenset(corrected_names))
        return merged

    def qc_fail_text(self) -> str:
        return qc_fail_yml_text(self._merged(self._existing()[1]))

    def _keep_previous(self) -> None:
        folder = self.folders.previous(datetime.datetime.now())
        self.folders.writable(folder / QC_FAIL_FILE)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(self.qc_fail_path, folder / QC_FAIL_FILE)

    def write_qc_fail(self) -> Path:
        """Merge the fails into qc_fail.yml, atomically; a version we did not write (no comment of ours on its first
        line) is kept first."""
        with self._lock:
            return self._write_qc_fail()

    def _write_qc_fail(self) -> Path:
        on_disk, content = self._existing()
        text = qc_fail_yml_text(self._merged(content))
        if on_disk is not None and not on_disk.startswith(f"# {COMMENT}\n") and on_disk != text:
            self._keep_previous()  # not ours: manual_correction.py's, or edited by hand
        if on_disk != text:
            _write_text(self.folders.writable(self.qc_fail_path), text)
        return self.qc_fail_path
