"""Model installation: download or copy an archive, verify its SHA-256, unpack it safely, install atomically.

An installed model is `<home>/models/<name>/` holding the unpacked archive and `sct_rootlets_install.json`
(provenance: source, archive SHA-256, the SHA-256 of every file). The published releases have no published
checksum: the one seen at first install is recorded there and any later archive must match it
("trust on first use"); cards of models built by this project carry their checksum from the start.
Every load re-hashes the installed files against the record.
"""

import datetime
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

import portalocker

from sct_rootlets import __version__, paths

from sct_rootlets.store import registry
from sct_rootlets.store.archive import extract_zip
from sct_rootlets.store.download import download_file, sha256_of_file
from sct_rootlets.errors import InstallError, ModelError
from sct_rootlets.io.atomic import refused_writes
from sct_rootlets.store.model_folder import find_trainer_dir, choose_checkpoints

logger = logging.getLogger(__name__)

PROVENANCE_FILE = "sct_rootlets_install.json"
#: Another process installing the same model may hold the lock while it downloads a large archive.
LOCK_TIMEOUT_S = 3600


@dataclass(frozen=True)
class Installation:
    """An installed model: its folder and the provenance recorded when it was installed."""
    name: str
    folder: Path
    provenance: dict

    @property
    def archive_sha256(self) -> str:
        return self.provenance["archive_sha256"]


def installed_folder(name: str) -> Path:
    return paths.models_dir() / name


def read_installation(name: str) -> Optional[Installation]:
    """The installation of `name`, or None if it is not installed (no folder or no provenance record)."""
    folder = installed_folder(name)
    record = folder / PROVENANCE_FILE
    if not record.is_file():
        return None
    try:
        provenance = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise ModelError(f"The install record {record} is unreadable; reinstall the model with -install {name}.")
    return Installation(name=name, folder=folder, provenance=provenance)


def installed_names() -> list:
    folder = paths.models_dir()
    if not folder.is_dir():
        return []
    return sorted(child.name for child in folder.iterdir() if (child / PROVENANCE_FILE).is_file())


def verify_installation(installation: Installation, files=None) -> None:
    """Re-hash installed files (all, or the given ones) against the record; raise ModelError on any change."""
    recorded = installation.provenance.get("files", {})
    relpaths = (sorted(recorded) if files is None
                else [Path(f).relative_to(installation.folder).as_posix() for f in files])
    for relpath in relpaths:
        path = installation.folder / relpath
        expected = recorded.get(relpath)
        if expected is None or not path.is_file() or sha256_of_file(path) != expected:
            raise ModelError(f"Installed model {installation.name!r} was modified or damaged after installation "
                             f"({relpath}); reinstall it with: sct_deepseg_rootlets -install {installation.name}")
    card_sha = _card_sha256(installation.name)
    if card_sha and card_sha != installation.archive_sha256:
        raise ModelError(f"Installed model {installation.name!r} does not match its model card's checksum; "
                         f"reinstall it with: sct_deepseg_rootlets -install {installation.name}")


def _card_sha256(name: str) -> Optional[str]:
    card = registry.all_cards().get(name)
    return card.sha256 if card else None


def _hash_tree(folder: Path) -> dict:
    return {path.relative_to(folder).as_posix(): sha256_of_file(path)
            for path in sorted(folder.rglob("*")) if path.is_file() and path.name != PROVENANCE_FILE}


def _expected_sha256(name: str, card_sha256: Optional[str]) -> tuple:
    """(checksum an archive for `name` must have, where it comes from): the card's, else the first install's."""
    if card_sha256:
        return card_sha256, "the model card"
    previous = read_installation(name)
    if previous:
        return previous.archive_sha256, f"recorded at first install; delete {previous.folder} to accept another"
    return None, ""


def writable_models_dir(*, installing: str = "", or_else: str = "") -> Path:
    """The models folder, created if missing; if it cannot be created or written, an InstallError that says where
    models go (and which one, `installing`) and how to point elsewhere (`or_else`: another way out, such as
    ", or give a model folder with -model FOLDER")."""
    folder = paths.models_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        what = (f"install {installing} in {folder}" if installing
                else f"{'write in' if folder.is_dir() else 'create'} the model folder {folder}")
        raise InstallError(f"Cannot {what} ({(exc.strerror or str(exc)).lower()}): set {paths.HOME_ENV_VAR} to a "
                           f"writable folder{or_else}.") from None
    return folder


def _refused_install(name: str, folder: Path):
    """A full or read-only disk under the model store becomes an InstallError that says what to do."""
    return refused_writes(folder, what=f"install {name}", error=InstallError,
                          elsewhere=f"set {paths.HOME_ENV_VAR} to another folder")


def _unpack_and_swap(archive: Path, name: str, provenance: dict) -> Path:
    """Unpack into a temp folder beside the target, check it is a model, then rename it into place."""
    models = paths.models_dir()
    with _refused_install(name, models):
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.unpacking-", dir=models))
        try:
            extract_zip(archive, staging)
            try:
                choose_checkpoints(find_trainer_dir(staging))
            except ModelError as exc:
                raise InstallError(f"{archive.name} is not an nnU-Net model archive: {exc}") from None
            provenance["files"] = _hash_tree(staging)
            (staging / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
            target = installed_folder(name)
            retired = None
            if target.exists():
                retired = Path(tempfile.mkdtemp(prefix=f".{name}.replaced-", dir=models))
                os.replace(target, retired / "model")
            os.replace(staging, target)
            if retired is not None:
                shutil.rmtree(retired, ignore_errors=True)
            return target
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _install_archive(archive: Path, name: str, source: str, expected_sha256: Optional[str],
                     version: str, expected_from: str = "the model card") -> Path:
    actual = sha256_of_file(archive)
    if expected_sha256 and actual != expected_sha256:
        raise InstallError(f"Checksum mismatch for {name}: expected SHA-256 {expected_sha256} ({expected_from}), "
                           f"got {actual}; the archive was not installed.")
    provenance = {
        "name": name,
        "version": version,
        "source": source,
        "archive_sha256": actual,
        "checksum": "verified" if expected_sha256 else "recorded at first install",
        "installed_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "installed_by": f"sct_rootlets {__version__}",
    }
    return _unpack_and_swap(archive, name, provenance)


def _lock(name: str):
    return portalocker.Lock(str(writable_models_dir(installing=name) / f".{name}.lock"), timeout=LOCK_TIMEOUT_S)


def _is_intact(name: str, warn: bool = True) -> bool:
    installation = read_installation(name)
    if installation is None:
        return False
    try:
        verify_installation(installation)
    except ModelError as exc:
        if warn:
            logger.warning("%s Reinstalling.", exc)
        return False
    return True


def install_model(name: Optional[str] = None, *, force: bool = False, progress: bool = True,
                  patient: bool = True) -> Path:
    """Install a registry model (the default one if no name): a no-op if it is installed and intact.

    `patient=False` when nobody asked for the download (first use): give up within seconds without network.
    """
    card = registry.get_card(name) if name else registry.default_card()
    if not card.urls and not card.bundled:
        raise InstallError(f"Model {card.name!r} has no download address; install its archive with -install-from.")
    if not force and _is_intact(card.name, warn=False):  # without the lock: a read-only model store still serves
        logger.info("Model %s is already installed in %s.", card.name, installed_folder(card.name))
        return installed_folder(card.name)
    with _lock(card.name):
        if not force and _is_intact(card.name):
            logger.info("Model %s is already installed in %s.", card.name, installed_folder(card.name))
            return installed_folder(card.name)
        expected, expected_from = _expected_sha256(card.name, card.sha256)
        if card.bundled:
            with resources.as_file(registry.bundled_archive(card)) as archive:
                if not archive.is_file():
                    raise InstallError(f"The bundled archive {card.bundled} of {card.name!r} is missing from "
                                       f"this installation of sct_rootlets; reinstall the package.")
                return _install_archive(archive, card.name, f"bundled with sct_rootlets {__version__}",
                                        expected, card.version, expected_from)
        archive = paths.downloads_dir() / f"{card.name}.zip"
        try:
            with _refused_install(card.name, archive.parent):
                url = download_file(card.urls, archive, progress=progress, patient=patient)
            return _install_archive(archive, card.name, url, expected, card.version, expected_from)
        finally:
            archive.unlink(missing_ok=True)


def _name_for_custom_archive(archive_name: str) -> str:
    stem = archive_name[:-4] if archive_name.lower().endswith(".zip") else archive_name
    name = re.sub(r"[^A-Za-z0-9._-]", "_", stem).lstrip("._-")
    if not name:
        raise InstallError(f"Cannot derive a model name from {archive_name!r}; rename the archive.")
    return name


def install_from(source: str, *, force: bool = False, progress: bool = True) -> Path:
    """Install an archive from a local path or an http(s) URL.

    An archive that is a registry model (same checksum, or same file name as one of its URLs) installs under
    that model's name and is held to its checksum; any other archive installs under its file name.
    """
    is_url = urlparse(source).scheme in ("http", "https")
    archive_name = Path(urlparse(source).path).name if is_url else Path(source).name
    writable_models_dir(installing=archive_name)  # before a download that could not be installed
    downloaded = None
    try:
        if is_url:
            downloaded = paths.downloads_dir() / f"from-url-{_name_for_custom_archive(archive_name)}.zip"
            with _refused_install(archive_name, downloaded.parent):
                download_file([source], downloaded, progress=progress)
            archive = downloaded
        else:
            archive = Path(source)
            if not archive.is_file():
                raise InstallError(f"Archive {source} does not exist.")
        actual = sha256_of_file(archive)
        card = registry.card_for_archive(actual, archive_name)
        name = card.name if card else _name_for_custom_archive(archive_name)
        with _lock(name):
            installation = read_installation(name)
            if not force and installation and installation.archive_sha256 == actual and _is_intact(name):
                logger.info("Model %s is already installed from this archive in %s.", name, installation.folder)
                return installation.folder
            if card:
                expected, expected_from = _expected_sha256(name, card.sha256)
            else:
                expected, expected_from = None, ""
                if installation and installation.archive_sha256 != actual and not force:
                    raise InstallError(f"Model {name!r} is already installed from a different archive; use "
                                       f"-overwrite to replace it.")
            version = card.version if card else "custom"
            return _install_archive(archive, name, source if is_url else str(archive.resolve()), expected,
                                    version, expected_from)
    finally:
        if downloaded is not None:
            downloaded.unlink(missing_ok=True)
