"""The quality record of one prediction, as its JSON sidecar keeps it under "Quality", and its reading back.

The score is in [0, 1], 1 where nothing suggests a correction and lower where a rater should look first; each
spinal level has its own. Flags name what looked wrong in the labels, in one sentence each. Readers (batch
summary, QC, review, `sct_rootlets_dataset select`) go through `read_quality` and never recompute anything.
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

#: The sidecar's key.
QUALITY_KEY = "Quality"


@dataclass(frozen=True)
class Flag:
    """Something in the labels that a correct segmentation would not show (`name`: see `quality.flags`)."""
    name: str
    message: str
    level: Optional[str] = None   # the level it is about ("C5"), None when it is about the whole image

    def as_dict(self) -> dict:
        return {"Name": self.name, "Level": self.level, "Message": self.message}


@dataclass(frozen=True)
class LevelQuality:
    """One spinal level's score, the network's confidence there (None where the network's output was not seen)
    and its voxel count in the label map."""
    score: float
    confidence: Optional[float]
    voxels: int

    def as_dict(self) -> dict:
        return {"Score": self.score, "Confidence": self.confidence, "Voxels": self.voxels}


@dataclass(frozen=True)
class Quality:
    """An image's score, network confidence, per-level records (by level name, superior first) and flags."""
    score: float
    confidence: Optional[float]
    levels: dict = field(default_factory=dict)
    flags: tuple = ()

    def as_dict(self) -> dict:
        return {"Score": self.score, "Confidence": self.confidence,
                "Levels": {name: level.as_dict() for name, level in self.levels.items()},
                "Flags": [flag.as_dict() for flag in self.flags]}

    @property
    def flag_names(self) -> list:
        """Each flag's name once, in the order first raised."""
        return list(dict.fromkeys(flag.name for flag in self.flags))

    @property
    def worst_level(self) -> Optional[str]:
        """The level with the lowest score (None without levels)."""
        return min(self.levels, key=lambda name: self.levels[name].score) if self.levels else None

    @classmethod
    def from_dict(cls, content: dict) -> "Quality":
        """The record from a sidecar's "Quality" value; ValueError where it is not one."""
        try:
            levels = {str(name): LevelQuality(_unit(level["Score"]), _unit_or_none(level.get("Confidence")),
                                              int(level["Voxels"]))
                      for name, level in content.get("Levels", {}).items()}
            flags = tuple(Flag(str(flag["Name"]), str(flag["Message"]),
                               None if flag.get("Level") is None else str(flag["Level"]))
                          for flag in content.get("Flags", []))
            return cls(_unit(content["Score"]), _unit_or_none(content.get("Confidence")), levels, flags)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a quality record ({exc!r})") from None


def _unit(value) -> float:
    number = float(value)
    if not (math.isfinite(number) and 0 <= number <= 1):
        raise ValueError(f"score {value!r} is outside [0, 1]")
    return number


def _unit_or_none(value) -> Optional[float]:
    return None if value is None else _unit(value)


def read_quality(sidecar: Path) -> Optional[Quality]:
    """The quality record in a prediction's sidecar; None where the file, or its record, is missing or unreadable
    (predictions made before scores existed, manual labels)."""
    try:
        content = json.loads(Path(sidecar).read_text(encoding="utf-8"))
        return Quality.from_dict(content[QUALITY_KEY])
    except (OSError, ValueError, KeyError, TypeError):
        return None
