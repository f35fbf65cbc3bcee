"""Model lookup: turn what the user gave (nothing, a model name or a folder) into a verified model to load."""

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from sct_rootlets import install, registry
from sct_rootlets.download import sha256_of_file
from sct_rootlets.errors import ModelError
from sct_rootlets.image import sct_orientation_to_axcodes
from sct_rootlets.model_folder import ModelFolder, open_model_folder

logger = logging.getLogger(__name__)

#: SCT's default when neither dataset.json nor a model card names an orientation.
DEFAULT_ORIENTATION = "LPI"


@dataclass(frozen=True)
class ResolvedModel:
    """A model ready to load, with what provenance needs to say about it."""
    name: str
    version: str
    folder: ModelFolder
    orientation: str             # SCT orientation string the network expects, e.g. "LPI"
    files_sha256: str            # one hash over the files inference reads (see `_files_digest`)
    file_hashes: dict = field(default_factory=dict)  # SHA-256 of each file inference reads, by path
    archive_sha256: Optional[str] = None
    url: Optional[str] = None


def _files_digest(folder: ModelFolder, file_hashes: dict) -> str:
    """SHA-256 over 'relative path  file SHA-256' lines of the files used: identifies the exact weights."""
    lines = "".join(f"{path.relative_to(folder.trainer_dir).as_posix()}  {file_hashes[path]}\n"
                    for path in folder.files)
    return hashlib.sha256(lines.encode()).hexdigest()


def _orientation(folder: ModelFolder, card: Optional[registry.ModelCard]) -> str:
    """dataset.json's `image_orientation` (as SCT reads it), else the card's, else LPI."""
    orientation = folder.dataset_json.get("image_orientation") or (card.image_orientation if card else None)
    orientation = orientation or DEFAULT_ORIENTATION
    try:
        sct_orientation_to_axcodes(orientation)
    except ValueError:
        raise ModelError(f"The model's image_orientation {orientation!r} is not an SCT orientation.") from None
    return orientation.upper()


def _from_installation(name: str, folds) -> ResolvedModel:
    installation = install.read_installation(name)
    if installation is None:
        raise ModelError(f"Model {name!r} is not installed; install it with: sct_deepseg_rootlets -install {name}")
    folder = open_model_folder(installation.folder, folds)
    install.verify_installation(installation, folder.files)
    recorded = installation.provenance["files"]
    hashes = {path: recorded[path.relative_to(installation.folder).as_posix()] for path in folder.files}
    card = registry.all_cards().get(name)
    return ResolvedModel(name=name, version=installation.provenance.get("version", "unknown"), folder=folder,
                         orientation=_orientation(folder, card), files_sha256=_files_digest(folder, hashes),
                         file_hashes=hashes, archive_sha256=installation.archive_sha256,
                         url=installation.provenance.get("source"))


def _from_path(path: Path, folds) -> ResolvedModel:
    folder = open_model_folder(path, folds)
    hashes = {file: sha256_of_file(file) for file in folder.files}
    return ResolvedModel(name=folder.trainer_dir.parent.name if folder.trainer_dir != path else path.name,
                         version="unknown", folder=folder, orientation=_orientation(folder, None),
                         files_sha256=_files_digest(folder, hashes), file_hashes=hashes)


def resolve_model(model: Optional[str] = None, folds: Optional[Sequence[str]] = None) -> ResolvedModel:
    """None -> the installed default model; an existing folder -> that nnU-Net model; else an installed name."""
    if model is None:
        default = registry.default_card().name
        offline = registry.offline_default_card()
        if install.read_installation(default) is None and offline is not None:
            logger.warning("The default model %s is not installed (sct_deepseg_rootlets -install); using the "
                           "bundled %s: %s", default, offline.name, offline.description)
            install.install_model(offline.name, progress=False)
            return _from_installation(offline.name, folds)
        if install.read_installation(default) is None:
            others = install.installed_names()
            hint = f" (installed: {', '.join(others)}; choose one with -model NAME)" if others else ""
            raise ModelError(f"No rootlets model is installed{hint}; install the default one with: "
                             f"sct_deepseg_rootlets -install   (or give an nnU-Net model folder with -model PATH)")
        return _from_installation(default, folds)
    path = Path(model).expanduser()
    if path.is_dir():
        return _from_path(path, folds)
    if model in registry.all_cards() or model in install.installed_names():
        return _from_installation(model, folds)
    if "/" in model or model.startswith("."):
        raise ModelError(f"Model folder {model} does not exist.")
    raise ModelError(f"Unknown model {model!r}: not a folder, not installed, and not one of "
                     f"{', '.join(sorted(registry.all_cards()))} (see -list-models).")
