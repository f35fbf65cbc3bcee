"""QC entries in SCT 7.x's format, written safely beside SCT's own writers.

Layout of a QC folder (as SCT writes it):
```
<qc>/index.html                       the viewer (ours if the folder has none; SCT's is never replaced)
<qc>/js/datasets.js                   window.SCT_QC_UUID = '...'; window.SCT_QC_DATASETS = [ all entries ];
<qc>/_json/qc_<YYYY_MM_DD_HHMMSS.ffffff>.json   one entry each
<qc>/<dataset>/<subject>/<contrast>/<command>/<timestamp>/{background_img,overlay_img}.png
```
Writers on one host serialise on the named semaphore SCT uses (`sct_qc-<folder name>-<md5 of real path>`),
so our jobs and SCT's can add entries to one folder at the same time.
"""

import datetime
import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable, Optional

import portalocker

from sct_rootlets import __version__
from sct_rootlets.errors import OutputError
from sct_rootlets.io.atomic import atomic_paths, refused_writes

logger = logging.getLogger(__name__)

ENTRY_KEYS = ("path", "cmdline", "command", "sctVersion", "dataset", "subject", "contrast", "inputFile", "plane",
              "backgroundImage", "overlayImage", "date", "rank", "qc")
PLANES = ("Axial", "Sagittal")
LOCK_TIMEOUT_S = 60
_UUID_PREFIX = "window.SCT_QC_UUID = '"
_UUID_STATEMENT = re.compile(r"""window\.SCT_QC_UUID\s*=\s*(?P<quote>['"])(?P<uuid>[^'"\s]+)(?P=quote)""")
#: What our viewer knows beyond SCT's keys (e.g. levels shown), one JSON per entry, kept out of SCT's _json.
EXTRAS_FOLDER = "_rootlets/entries"


@dataclass(frozen=True)
class EntryImages:
    """Where a renderer must write the entry's two pictures (same pixel size; overlay transparent)."""
    background: Path
    overlay: Path


def qc_lock(qc_dir: Path) -> portalocker.BoundedSemaphore:
    """The semaphore SCT's QC writers take for this folder (same name, so both tools serialise)."""
    real = Path(qc_dir).resolve()
    name = f"sct_qc-{real.name}-{hashlib.md5(str(real).encode('utf-8')).hexdigest()}"
    return portalocker.BoundedSemaphore(maximum=1, name=name, timeout=LOCK_TIMEOUT_S, check_interval=0.1,
                                        fail_when_locked=False)


def default_identity(input_path: Path) -> tuple:
    """SCT's default (dataset, subject, contrast): the input's 3rd, 2nd and 1st parent folder names."""
    parents = Path(input_path).absolute().parents
    return parents[2].name, parents[1].name, parents[0].name


def _read_entries(qc_dir: Path) -> list:
    entries = []
    for path in sorted((qc_dir / "_json").glob("*.json")):
        try:
            entries.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError):
            logger.warning("Skipping unreadable QC entry %s", path)
    return entries


def _report_uuid(datasets_js: Path) -> str:
    """Keep the report's UUID (the viewer keys its saved marks on it); make one for a new report.

    Found wherever the statement is: SCT's own file starts with a blank line, and may quote either way.
    """
    if datasets_js.is_file():
        found = _UUID_STATEMENT.search(datasets_js.read_text(encoding="utf-8"))
        if found:
            return found.group("uuid")
    return str(uuid.uuid4())


def _read_extras(qc_dir: Path) -> dict:
    extras = {}
    for path in sorted((qc_dir / EXTRAS_FOLDER).glob("qc_*.json")):
        try:
            extras[path.stem[len("qc_"):]] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            logger.warning("Skipping unreadable QC extras %s", path)
    return extras


def rebuild_datasets_js(qc_dir: Path) -> Path:
    """Rewrite js/datasets.js from every _json entry, and our viewer's extras (call with the lock held)."""
    target = qc_dir / "js" / "datasets.js"
    with atomic_paths([target, qc_dir / "js" / "rootlets_extras.js"], overwrite=True) as (datasets, extras):
        datasets.write_text(f"{_UUID_PREFIX}{_report_uuid(target)}';\n"
                            f"window.SCT_QC_DATASETS = {json.dumps(_read_entries(qc_dir), indent=1)};\n",
                            encoding="utf-8")
        extras.write_text(f"window.SCT_ROOTLETS_EXTRAS = {json.dumps(_read_extras(qc_dir), indent=1)};\n",
                          encoding="utf-8")
    return target


def install_viewer(qc_dir: Path) -> None:
    """Put our viewer in a QC folder that has none; an existing index.html (e.g. SCT's) is left alone."""
    if (qc_dir / "index.html").exists():
        return
    source = resources.files("sct_rootlets.qc") / "viewer"
    names = ("index.html", "viewer.js", "viewer.css")
    targets = [qc_dir / (name if name == "index.html" else f"_rootlets/{name}") for name in names]
    with atomic_paths(targets, overwrite=True) as temps:
        for name, temp in zip(names, temps):
            temp.write_bytes((source / name).read_bytes())


def _reserve_timestamp(qc_dir: Path) -> tuple:
    """(datetime, timestamp) that no other writer of this folder uses: `_json/.qc_<ts>.reserved` is created
    exclusively, so parallel writers never share an entry name even within one microsecond."""
    json_dir = qc_dir / "_json"
    json_dir.mkdir(parents=True, exist_ok=True)
    while True:
        now = datetime.datetime.now()
        timestamp = now.strftime("%Y_%m_%d_%H%M%S.%f")
        try:
            os.close(os.open(json_dir / f".qc_{timestamp}.reserved", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return now, timestamp
        except FileExistsError:
            continue


def _record_entry(qc_dir: Path, record: Path, entry: dict, extras: Optional[dict]) -> None:
    """Write an entry's record (and extras), then the report that lists it (call with the lock held); a failure
    removes the record again, so the report's files and records keep agreeing."""
    extras_record = qc_dir / EXTRAS_FOLDER / record.name
    with atomic_paths([record, extras_record] if extras else [record]) as temps:
        temps[0].write_text(json.dumps(entry, indent=1), encoding="utf-8")
        if extras:
            temps[1].write_text(json.dumps(extras), encoding="utf-8")
    try:
        install_viewer(qc_dir)
        rebuild_datasets_js(qc_dir)
    except BaseException:
        record.unlink(missing_ok=True)
        extras_record.unlink(missing_ok=True)
        raise


def _remove_entry_folder(folder: Path, qc_dir: Path) -> None:
    """Remove a failed entry's pictures, and the folders above them that only it used."""
    shutil.rmtree(folder, ignore_errors=True)
    for parent in folder.relative_to(qc_dir).parents:
        if parent == Path("."):
            break
        try:
            (qc_dir / parent).rmdir()
        except OSError:  # not empty: another entry's
            break


def add_entry(qc_dir, *, input_path, command: str, cmdline: str, plane: str, render: Callable[[EntryImages], None],
              dataset: Optional[str] = None, subject: Optional[str] = None, extras: Optional[dict] = None) -> Path:
    """Create one QC entry: `render` draws the two pictures, then the entry is recorded; returns its JSON path.

    `extras` (e.g. {"levels": ["C5", "C6"]}) is kept for our viewer's filters, outside SCT's entry.
    """
    if plane not in PLANES:
        raise ValueError(f"plane {plane!r} must be one of {PLANES}")
    qc_dir = Path(qc_dir)
    try:
        qc_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"Cannot create the QC folder {qc_dir}: {exc.strerror}.") from None
    default_dataset, default_subject, contrast = default_identity(Path(input_path))
    dataset, subject = dataset or default_dataset, subject or default_subject
    # Pictures, record and report appear together or not at all; a full or read-only disk is said in one sentence.
    with refused_writes(qc_dir, what=f"add a QC entry to {qc_dir}", elsewhere="choose another QC folder"):
        date, timestamp = _reserve_timestamp(qc_dir)
        reservation = qc_dir / "_json" / f".qc_{timestamp}.reserved"
        folder = qc_dir / dataset / subject / contrast / command / timestamp
        images = EntryImages(background=folder / "background_img.png", overlay=folder / "overlay_img.png")
        entry = {
            "path": str(Path.cwd()), "cmdline": cmdline, "command": command,
            "sctVersion": f"sct_rootlets {__version__}", "dataset": dataset, "subject": subject,
            "contrast": contrast, "inputFile": Path(input_path).name, "plane": plane,
            "backgroundImage": images.background.relative_to(qc_dir).as_posix(),
            "overlayImage": images.overlay.relative_to(qc_dir).as_posix(),
            "date": date.strftime("%Y-%m-%d %H:%M:%S.%f"), "rank": "", "qc": "",
        }
        record = qc_dir / "_json" / f"qc_{timestamp}.json"
        try:
            folder.mkdir(parents=True)
            render(images)
            with qc_lock(qc_dir):
                _record_entry(qc_dir, record, entry, extras)
        except BaseException:
            _remove_entry_folder(folder, qc_dir)
            raise
        finally:
            reservation.unlink(missing_ok=True)
    logger.info("QC entry added; open %s in a browser", qc_dir / "index.html")
    return record
