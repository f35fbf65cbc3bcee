"""Model lookup: turn what the user gave (nothing, a model name or a folder) into a verified model to load.

Nothing given means the default model, in this order of precedence: our installed copy; else SCT's copy of the
same release, used from SCT's folder (`sct_rootlets.store.sct_copy`); else installed on first use (as SCT and
TotalSegmentator users expect); else, when that fails or `SCT_ROOTLETS_OFFLINE` is set, the bundled starter model
with a warning that says what it is. A registry name is our installed copy, else SCT's copy of that release (e.g.
SCT's contrast-agnostic cord model for `-cord-model sct-contrast-agnostic`), else an error saying how to install it.
"""

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from sct_rootlets.store import install, registry
from sct_rootlets.store.download import sha256_of_file
from sct_rootlets.errors import InstallError, ModelError
from sct_rootlets.io.bids import channel_contrasts
from sct_rootlets.io.image import sct_orientation_to_axcodes
from sct_rootlets.store.model_folder import ModelFolder, open_model_folder
from sct_rootlets.store.sct_copy import SctCopy, find_sct_copy, verified_hashes

logger = logging.getLogger(__name__)

#: SCT's default when neither dataset.json nor a model card names an orientation.
DEFAULT_ORIENTATION = "LPI"
#: Set to 1 on machines without internet and in CI: a run without -model then never downloads anything.
OFFLINE_ENV_VAR = "SCT_ROOTLETS_OFFLINE"
_TRUE_WORDS = ("1", "true", "yes", "on")


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
    source: Optional[str] = None  # where the folder comes from when it is not ours, e.g. "SCT (<folder>)"
    contrasts: tuple = ()         # what the model was made for, as its card (else its dataset.json) names them


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


def _contrasts(folder: ModelFolder, card: Optional[registry.ModelCard]) -> tuple:
    """The card's contrasts, else the channel names of dataset.json (what a model built here was trained on)."""
    if card is not None:
        return card.contrasts
    names = (folder.dataset_json.get("channel_names") or {}).values()
    return tuple(contrast for name in names for contrast in channel_contrasts(str(name)))


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
                         url=installation.provenance.get("source"), contrasts=_contrasts(folder, card))


def _from_sct_copy(copy: SctCopy, folds) -> ResolvedModel:
    """SCT's copy, used where it lies: its files are checked against the checksums recorded at first use."""
    try:
        folder = open_model_folder(copy.folder, folds)
    except ModelError as exc:
        raise ModelError(f"SCT's copy of {copy.name} cannot be used: {str(exc).rstrip('.')}; install our own copy "
                         f"with: {copy.install_command}") from None
    hashes = verified_hashes(copy, folder.files)
    card = registry.all_cards().get(copy.name)
    return ResolvedModel(name=copy.name, version=copy.version, folder=folder, orientation=_orientation(folder, card),
                         files_sha256=_files_digest(folder, hashes), file_hashes=hashes, url=copy.url,
                         source=copy.source, contrasts=_contrasts(folder, card))


def sct_copy_of(name: str) -> Optional[SctCopy]:
    """SCT's copy of the registry model `name`, used when ours is not installed and SCT has the card's release."""
    card = registry.all_cards().get(name)
    if card is None or install.read_installation(name) is not None:
        return None
    return find_sct_copy(card, default=False)


def _from_name(name: str, folds) -> ResolvedModel:
    """A model named on the command line: ours if installed, else SCT's copy of its release, else an error."""
    copy = sct_copy_of(name)
    return _from_sct_copy(copy, folds) if copy is not None else _from_installation(name, folds)


def _from_path(path: Path, folds) -> ResolvedModel:
    folder = open_model_folder(path, folds)
    hashes = {file: sha256_of_file(file) for file in folder.files}
    return ResolvedModel(name=folder.trainer_dir.parent.name if folder.trainer_dir != path else path.name,
                         version="unknown", folder=folder, orientation=_orientation(folder, None),
                         files_sha256=_files_digest(folder, hashes), file_hashes=hashes,
                         contrasts=_contrasts(folder, None))


def offline_mode() -> bool:
    """True when $SCT_ROOTLETS_OFFLINE says no model may be downloaded unasked (CI, machines without internet)."""
    return os.environ.get(OFFLINE_ENV_VAR, "").strip().lower() in _TRUE_WORDS


def _offline_reason(default_name: str) -> str:
    return f"{OFFLINE_ENV_VAR} is set and the default model {default_name} is not installed"


@dataclass(frozen=True)
class DefaultChoice:
    """What a run without a model does, as far as it is known without touching the network."""
    default: registry.ModelCard
    starter: Optional[registry.ModelCard]  # the bundled fallback
    installed: bool
    offline: bool
    sct_copy: Optional[SctCopy] = None  # SCT's copy of the default release, when SCT has one

    def describe(self) -> str:
        """The model a plain run uses and why, in one line (for -list-models)."""
        name = self.default.name
        if self.installed:
            return f"{name}: the default model, installed"
        if self.sct_copy is not None:
            return (f"{name}: the default model, installed by SCT at {self.sct_copy.folder}, used from there "
                    f"(not downloaded again)")
        fallback = f"the bundled {self.starter.name}" if self.starter else "no model (an error)"
        if self.offline:
            return f"{fallback}: {_offline_reason(name)}"
        return (f"{name}: the default model, not installed yet, downloaded and installed on first use "
                f"(if that fails: {fallback}; {OFFLINE_ENV_VAR}=1 skips the download)")


def default_choice() -> DefaultChoice:
    default = registry.default_card()
    installed = install.read_installation(default.name) is not None
    return DefaultChoice(default=default, starter=registry.offline_default_card(), installed=installed,
                         offline=offline_mode(), sct_copy=None if installed else find_sct_copy(default))


def _install_on_first_use(card: registry.ModelCard, progress: bool) -> None:
    source = f" from {card.urls[0]}" if card.urls else ""
    logger.info("The default model %s is not installed: installing it now%s (first use; %s=1 skips this).",
                card.name, source, OFFLINE_ENV_VAR)
    install.install_model(card.name, progress=progress, patient=False)


def _resolve_default(folds, progress: bool) -> ResolvedModel:
    """The default model: ours if installed, else SCT's copy of the same release, else installed on first use
    unless offline; if it cannot be, the bundled starter, said so."""
    choice = default_choice()
    name = choice.default.name
    if choice.installed:
        return _from_installation(name, folds)
    if choice.sct_copy is not None:
        return _from_sct_copy(choice.sct_copy, folds)
    if choice.starter is None or install.read_installation(choice.starter.name) is None:
        # Whatever follows installs a model: a store that cannot take one stops here, saying where else to go.
        install.writable_models_dir(or_else=", or give a model folder with -model FOLDER")
    if choice.offline:
        why = _offline_reason(name)
    else:
        try:
            _install_on_first_use(choice.default, progress)
        except InstallError as exc:
            why = f"the default model {name} could not be installed: {str(exc).rstrip('.')}"
        else:
            return _from_installation(name, folds)
    if choice.starter is None:
        others = install.installed_names()
        hint = f"; installed: {', '.join(others)}, choose one with -model NAME" if others else ""
        raise ModelError(f"No rootlets model to use: {why}{hint}; install the default one with: "
                         f"sct_deepseg_rootlets -install   (or give an nnU-Net model folder with -model PATH)")
    logger.warning("Warning: %s; using the bundled %s instead, %s.", why, choice.starter.name, choice.starter.caveat)
    install.install_model(choice.starter.name, progress=False)
    return _from_installation(choice.starter.name, folds)


def resolve_model(model: Optional[str] = None, folds: Optional[Sequence[str]] = None, *,
                  progress: bool = True) -> ResolvedModel:
    """None -> the default model (see `_resolve_default`); an existing folder -> that nnU-Net model; else an
    installed or registry name (ours, else SCT's copy of that release). `progress` shows a bar while the default
    model downloads on first use."""
    if model is None:
        return _resolve_default(folds, progress)
    path = Path(model).expanduser()
    if path.is_dir():
        return _from_path(path, folds)
    if model in registry.all_cards() or model in install.installed_names():
        return _from_name(model, folds)
    if "/" in model or model.startswith("."):
        raise ModelError(f"Model folder {model} does not exist.")
    raise ModelError(f"Unknown model {model!r}: not a folder, not installed, and not one of "
                     f"{', '.join(sorted(registry.all_cards()))} (see -list-models).")
