"""The model registry: model cards (JSON) that say what a model is and where to get it.

Cards ship in the package (`models/` in the source tree) and may be added per lab in `<home>/cards/*.json`
(see `sct_rootlets.paths.rootlets_home`); a lab card marked default replaces the shipped default of its task (e.g. a
local mirror). Reading them imports nothing heavy, so `-list-models` and `-h` answer instantly.
"""

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Optional

from sct_rootlets import paths
from sct_rootlets.errors import ModelError
from sct_rootlets.io.image import sct_orientation_to_axcodes

#: The task of the models `sct_deepseg_rootlets` picks by default; cards of other models (e.g. a cord model) name
#: their own task (SCT's names: "spinalcord", ...) so that their default and offline default do not compete.
ROOTLETS_TASK = "rootlets"

_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ModelCard:
    """What a model is (labels, orientation, contrasts, license, citation) and where its archive lives.

    `sha256` is the archive's checksum when it is known in advance (models this project builds); for the
    published releases it is None and the checksum seen at first install is recorded and enforced afterwards.
    `caveat` says what an offline default is and is not: it is printed whenever that model replaces the default.
    """
    name: str
    version: str
    description: str
    urls: tuple
    sha256: Optional[str]
    labels: dict
    image_orientation: str
    contrasts: tuple
    license: str
    citation: str
    homepage: str = ""
    default: bool = False
    bundled: str = ""             # archive shipped beside the card in the package: installs offline
    offline_default: bool = False  # used when no model is chosen and the default one cannot be installed
    caveat: str = ""
    task: str = ROOTLETS_TASK

    @classmethod
    def from_dict(cls, data: dict, source: str) -> "ModelCard":
        """Build a card from parsed JSON, rejecting anything malformed with a message naming the file."""
        required = ("name", "version", "description", "urls", "sha256", "labels", "image_orientation",
                    "contrasts", "license", "citation")
        missing = [key for key in required if key not in data]
        if missing:
            raise ModelError(f"Model card {source} lacks the field(s) {', '.join(missing)}.")
        name, sha256, urls = data["name"], data["sha256"], data["urls"]
        problems = []
        if not isinstance(name, str) or not _NAME_PATTERN.match(name):
            problems.append(f"name {name!r} must be letters, digits, '.', '_' or '-'")
        if sha256 is not None and not (isinstance(sha256, str) and _SHA256_PATTERN.match(sha256)):
            problems.append("sha256 must be null or 64 lowercase hex digits")
        if not isinstance(urls, list) or not all(isinstance(u, str) and u.startswith(("http://", "https://"))
                                                 for u in urls):
            problems.append("urls must be a list of http(s) addresses (empty for a model installed from a file)")
        bundled = data.get("bundled", "")
        if bundled and not (isinstance(bundled, str) and _NAME_PATTERN.match(bundled) and bundled.endswith(".zip")
                            and sha256):
            problems.append("bundled must be a .zip file name beside the card, with the card's sha256 set")
        if data.get("offline_default") and not bundled:
            problems.append("only a bundled model can be the offline default")
        caveat, task = data.get("caveat", ""), data.get("task", ROOTLETS_TASK)
        if data.get("offline_default") and not (isinstance(caveat, str) and caveat.strip()):
            problems.append("an offline default needs a caveat (what it is and is not, printed when it is used)")
        if not (isinstance(task, str) and _NAME_PATTERN.match(task)):
            problems.append(f"task {task!r} must be letters, digits, '.', '_' or '-'")
        labels = data["labels"]
        if not isinstance(labels, dict) or not all(isinstance(v, int) and 0 < v < 256 for v in labels.values()):
            problems.append("labels must map names to values 1..255")
        try:
            sct_orientation_to_axcodes(str(data["image_orientation"]))
        except ValueError:
            problems.append(f"image_orientation {data['image_orientation']!r} is not an SCT orientation")
        if problems:
            raise ModelError(f"Model card {source} is invalid: {'; '.join(problems)}.")
        fields = {key: data[key] for key in cls.__dataclass_fields__ if key in data}
        fields.update(urls=tuple(urls), contrasts=tuple(data["contrasts"]))
        return cls(**fields)

    def to_dict(self) -> dict:
        return {key: (list(value) if isinstance(value, tuple) else value)
                for key, value in self.__dict__.items()}


def _read_card(text: str, source: str) -> ModelCard:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelError(f"Model card {source} is not valid JSON ({exc.msg}, line {exc.lineno}).") from None
    if not isinstance(data, dict):
        raise ModelError(f"Model card {source} must hold one JSON object.")
    return ModelCard.from_dict(data, source)


def _bundled_cards() -> list:
    folder = resources.files("sct_rootlets").joinpath("model_cards")
    return [_read_card(entry.read_text(encoding="utf-8"), entry.name)
            for entry in sorted(folder.iterdir(), key=lambda e: e.name) if entry.name.endswith(".json")]


def _lab_cards() -> list:
    folder = paths.cards_dir()
    if not folder.is_dir():
        return []
    return [_read_card(path.read_text(encoding="utf-8"), str(path)) for path in sorted(folder.glob("*.json"))]


def _by_name(cards: list) -> dict:
    named = {}
    for card in cards:
        if card.name in named:
            raise ModelError(f"Model name {card.name!r} is defined by two model cards; rename one of them.")
        named[card.name] = card
    return named


def all_cards() -> dict:
    """Every known card by name: the bundled ones, then the lab's own (a name may not be defined twice)."""
    return _by_name(_bundled_cards() + _lab_cards())


def get_card(name: str) -> ModelCard:
    cards = all_cards()
    if name not in cards:
        raise ModelError(f"Unknown model {name!r}; known models: {', '.join(sorted(cards))} (see -list-models).")
    return cards[name]


def default_card(task: str = ROOTLETS_TASK) -> ModelCard:
    """The task's default model: a lab card marked default (e.g. a lab's mirror) replaces the shipped one."""
    bundled, lab = _bundled_cards(), _lab_cards()
    _by_name(bundled + lab)  # refuse duplicate names here too
    for source, cards in (("lab", lab), ("shipped", bundled)):
        defaults = [card for card in cards if card.default and card.task == task]
        if len(defaults) > 1:
            raise ModelError(f"At most one {source} model card may be the default {task} model, found "
                             f"{len(defaults)}: {', '.join(card.name for card in defaults)}.")
        if defaults:
            return defaults[0]
    raise ModelError(f"No model card is marked as the default {task} model.")


def offline_default_card(task: str = ROOTLETS_TASK) -> Optional[ModelCard]:
    """The bundled model used when the task's default one cannot be installed (None if no card is marked so)."""
    cards = [card for card in all_cards().values() if card.offline_default and card.task == task]
    if len(cards) > 1:
        raise ModelError(f"At most one model card may be the offline default {task} model, found {len(cards)}.")
    return cards[0] if cards else None


def bundled_archive(card: ModelCard):
    """The packaged archive of a bundled model (an importlib.resources traversable)."""
    return resources.files("sct_rootlets").joinpath("model_cards") / card.bundled


def card_for_archive(sha256: str, archive_name: str) -> Optional[ModelCard]:
    """The card an archive belongs to: by its checksum, else by the file name of one of the card's URLs."""
    cards = all_cards().values()
    for card in cards:
        if card.sha256 == sha256:
            return card
    for card in cards:
        if any(Path(url.split("?")[0]).name == archive_name for url in card.urls):
            return card
    return None
