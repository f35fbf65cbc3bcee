"""One prediction's quality: the network's confidence, lowered by each anatomical flag, per image and per level.

Score in [0, 1], 1 where nothing suggests a correction; lower means check first. Each flag halves the score of
what it is about (its level, or the image and every level for an image-wide flag), so two flagged cases rank below
one, whatever the network thought; an image without any rootlet scores 0.
"""

from typing import Optional

import numpy as np

from sct_rootlets.anatomy.cord import cord_note
from sct_rootlets.anatomy.level_names import spinal_level_name
from sct_rootlets.inference.confidence import NetworkConfidence
from sct_rootlets.quality.flags import anatomical_flags
from sct_rootlets.quality.record import LevelQuality, Quality

#: What each flag multiplies the score by.
FLAG_FACTOR = 0.5


def _rounded(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(float(value), 4)


def assess(labels: np.ndarray, affine: np.ndarray, confidence: NetworkConfidence,
           cord: Optional[np.ndarray] = None, cord_provenance: Optional[dict] = None) -> Quality:
    """The `Quality` of a label map (on its image's grid) from the network's confidence in it and the flags its
    anatomy raises; `cord` is the mask the run used, `cord_provenance` the sidecar's `cord_mask` entry."""
    flags = anatomical_flags(labels, affine, cord, cord_note(cord_provenance))
    image_flags = sum(flag.level is None for flag in flags)
    counts = np.bincount(labels.reshape(-1))
    levels = {}
    for value in np.flatnonzero(counts[1:]) + 1:
        name = spinal_level_name(int(value))
        level_confidence = confidence.levels.get(int(value), confidence.image)
        flagged = image_flags + sum(flag.level == name for flag in flags)
        levels[name] = LevelQuality(_rounded((level_confidence or 0.0) * FLAG_FACTOR ** flagged),
                                    _rounded(level_confidence), int(counts[value]))
    image_confidence = confidence.image if levels else 0.0
    score = (image_confidence or 0.0) * FLAG_FACTOR ** len(flags)
    return Quality(_rounded(score), _rounded(confidence.image), levels, tuple(flags))
