"""Models SCT has already installed: used in place of downloading the same release again.

SCT keeps each model in `$SCT_DIR/data/deepseg_models/<SCT's model name>/` (the published zip, unpacked) with a
`source.json` (`model_name`, `model_urls`, `custom`); its model for a task is found by our card's task, which uses
SCT's task names (`SCT_MODEL_FOLDERS`). When that file names the release of one of our model cards (the same URL,
or a mirror of it: the same archive file name), that model is used from SCT's folder as it is: the rootlets model
by a run without `-model`, the contrast-agnostic cord model by `-cord-model` (see `sct_rootlets.store.resolve`).

SCT's copy is never written to. SCT publishes no checksum, so the SHA-256 of every file inference may read is
recorded in our home the first time the copy is used (`<home>/sct_copies/<name>.<folder id>.json`, one record per
SCT folder) and every later use re-hashes the files it reads against that record.
"""

import datetime
import hashlib
import importlib.util
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

from sct_rootlets import __version__, paths
from sct_rootlets.errors import ModelError
from sct_rootlets.io.atomic import atomic_paths
from sct_rootlets.store import registry
from sct_rootlets.store.download import sha256_of_file
from sct_rootlets.store.model_folder import CHECKPOINT_NAMES, find_trainer_dir

logger = logging.getLogger(__name__)

SCT_DIR_ENV_VAR = "SCT_DIR"
#: SCT's name (and folder name) of the rootlets model, below `$SCT_DIR/data/deepseg_models/`.
SCT_ROOTLETS_MODEL = "model_seg_spinal_rootlets_nnunet"
#: SCT's contrast-agnostic cord model (`sct_deepseg spinalcord`), below the same folder.
SCT_CORD_MODEL = "model_seg_sc_contrast_agnostic_nnunet"
#: SCT's model folder for each task (our cards' `task` uses SCT's task names).
SCT_MODEL_FOLDERS = {"rootlets": SCT_ROOTLETS_MODEL, "spinalcord": SCT_CORD_MODEL}
SOURCE_FILE = "source.json"


def sct_root() -> Optional[Path]:
    """SCT's installation folder: `$SCT_DIR` if set, else the repository above an importable `spinalcordtoolbox`
    package (found without importing it), else None."""
    configured = os.environ.get(SCT_DIR_ENV_VAR, "").strip()
    if configured:
        return Path(configured).expanduser()
    try:
        spec = importlib.util.find_spec("spinalcordtoolbox")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.origin and spec.origin not in ("namespace", "built-in"):
        package = Path(spec.origin).parent
    elif spec.submodule_search_locations:
        package = Path(next(iter(spec.submodule_search_locations)))
    else:
        return None
    return package.parent


def sct_models_folder() -> Optional[Path]:
    """`$SCT_DIR/data/deepseg_models`, or None without SCT."""
    root = sct_root()
    return root / "data" / "deepseg_models" if root else None


def inside_sct_models(path: Path) -> bool:
    """True for a path inside SCT's model folder: a place this package never writes to (e.g. ONNX caches)."""
    models = sct_models_folder()
    if models is None:
        return False
    try:
        Path(os.path.realpath(path)).relative_to(os.path.realpath(models))
    except ValueError:
        return False
    return True


def source_urls(source: dict) -> list:
    """The URLs of SCT's `source.json` `model_urls`: a string, a list of strings, or a dict of either."""
    urls = source.get("model_urls")
    values = list(urls.values()) if isinstance(urls, dict) else [urls]
    flat = []
    for value in values:
        flat.extend(value if isinstance(value, list) else [value])
    return [url for url in flat if isinstance(url, str) and url]


def _archive_name(url: str) -> str:
    return Path(urlparse(url).path).name


def _matching_url(urls: list, card: registry.ModelCard) -> Optional[str]:
    """The first of SCT's URLs that is the card's release: one of its URLs, or any URL of the same archive file."""
    names = {_archive_name(url) for url in card.urls}
    for url in urls:
        if url in card.urls or _archive_name(url) in names:
            return url
    return None


@dataclass(frozen=True)
class SctCopy:
    """SCT's installed copy of one of our registry models."""
    name: str      # our card's name
    version: str
    folder: Path   # SCT's model folder, e.g. $SCT_DIR/data/deepseg_models/model_seg_spinal_rootlets_nnunet
    url: str       # the release URL source.json names
    default: bool = True  # the copy stands in for the default model (a run without -model), else a named one

    @property
    def title(self) -> str:
        """How messages name the model."""
        return f"the default model {self.name}" if self.default else self.name

    @property
    def install_command(self) -> str:
        """The command that installs our own copy instead."""
        return "sct_deepseg_rootlets -install" + ("" if self.default else f" {self.name}")

    @property
    def record_path(self) -> Path:
        """Where the checksums seen at first use are kept: one record per SCT folder."""
        folder_id = hashlib.sha256(os.path.realpath(self.folder).encode()).hexdigest()[:12]
        return paths.rootlets_home() / "sct_copies" / f"{self.name}.{folder_id}.json"

    @property
    def source(self) -> str:
        """How sidecars name where the model came from."""
        return f"SCT ({self.folder})"


def find_sct_copy(card: registry.ModelCard, default: bool = True) -> Optional[SctCopy]:
    """SCT's copy of `card`'s release, if SCT is present, has a model for the card's task, and its `source.json`
    names that release; else None (with the reason in the debug log). `default`: see `SctCopy`."""
    models = sct_models_folder()
    if models is None or card.task not in SCT_MODEL_FOLDERS:
        return None
    folder = models / SCT_MODEL_FOLDERS[card.task]
    source_file = folder / SOURCE_FILE
    if not source_file.is_file():
        logger.debug("No SCT %s model to reuse: %s does not exist.", card.task, source_file)
        return None
    try:
        source = json.loads(source_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        logger.debug("Ignoring SCT's %s model: %s is unreadable (%s).", card.task, source_file, exc)
        return None
    if not isinstance(source, dict):
        logger.debug("Ignoring SCT's %s model: %s holds no JSON object.", card.task, source_file)
        return None
    url = _matching_url(source_urls(source), card)
    if url is None:
        logger.debug("Ignoring SCT's %s model in %s: its source.json names %s, not the release of %s.",
                     card.task, folder, source.get("model_urls"), card.name)
        return None
    return SctCopy(name=card.name, version=card.version, folder=folder, url=url, default=default)


def _model_files(folder: Path) -> list:
    """Every file inference may read in the copy: dataset.json, plans.json and each fold's checkpoints."""
    trainer_dir = find_trainer_dir(folder)
    checkpoints = [path for path in sorted(trainer_dir.glob("fold_*/*"))
                   if path.name in CHECKPOINT_NAMES and path.is_file()]
    return [trainer_dir / "dataset.json", trainer_dir / "plans.json", *checkpoints]


def read_record(copy: SctCopy) -> Optional[dict]:
    """The checksums recorded at the copy's first use, or None before it."""
    path = copy.record_path
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        record = None
    if not isinstance(record, dict) or not isinstance(record.get("files"), dict):
        raise ModelError(f"The record of SCT's copy of {copy.name} ({path}) is unreadable; delete it to record the "
                         f"copy's checksums again.")
    return record


def record_first_use(copy: SctCopy) -> dict:
    """Hash every file inference may read in SCT's copy and save the record in our home (never in SCT's folder)."""
    files = {path.relative_to(copy.folder).as_posix(): sha256_of_file(path) for path in _model_files(copy.folder)}
    record = {
        "name": copy.name,
        "version": copy.version,
        "folder": str(copy.folder),
        "source": copy.url,
        "checksum": "recorded at first use",
        "recorded_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "recorded_by": f"sct_rootlets {__version__}",
        "files": files,
    }
    copy.record_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_paths([copy.record_path], overwrite=True) as (temporary,):
        temporary.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def verified_hashes(copy: SctCopy, files) -> dict:
    """SHA-256 of each of `files` (paths inside the copy), checked against the record made at first use (made
    now if there is none); a file that changed since is a ModelError."""
    record = read_record(copy)
    if record is None:
        logger.info("Using SCT's copy of %s at %s instead of downloading it; its checksums are recorded in %s "
                    "and checked on every use.", copy.title, copy.folder, copy.record_path)
        recorded, fresh = record_first_use(copy)["files"], True
    else:
        logger.info("Using SCT's copy of %s at %s.", copy.title, copy.folder)
        recorded, fresh = record["files"], False
    hashes = {}
    for path in files:
        relpath = Path(path).relative_to(copy.folder).as_posix()
        actual = recorded.get(relpath) if fresh else (sha256_of_file(path) if Path(path).is_file() else None)
        if actual is None or actual != recorded.get(relpath):
            raise ModelError(f"SCT's copy of {copy.name} at {copy.folder} changed since its first use here "
                             f"({relpath}); to accept it delete {copy.record_path}, or install our own copy with: "
                             f"{copy.install_command}")
        hashes[path] = actual
    return hashes
