"""How sure the network was of the labels it gave, from its own logits: the cheap half of a prediction's quality.

Read on the logits the labels come from (the network's grid, before they are resampled to the image), over the
voxels the network gives any foreground probability: elsewhere it is sure of background and nothing can change.
Per label, the share of its confident voxels among its possible ones: voxels where the label's probability
exceeds `SURE` over those where it exceeds `POSSIBLE`. A crisp structure scores near 1; a blurred, noisy or
unfamiliar one, whose edges and levels the network hesitates over, lower (README, "Which predictions to check
first", and bench/RESULTS.md for how this was chosen among other measures).
"""

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

#: Probability above which a voxel is confidently a label, and above which it possibly is.
SURE, POSSIBLE = 0.75, 0.25
#: Voxels whose every foreground logit is this far below the background logit (foreground probability under
#: about e^-6, 0.25 %) cannot reach `POSSIBLE` for any label: skipped, which keeps the cost to a few voxels.
CANDIDATE_LOGIT_GAP = 6.0
#: Voxels converted to float32 at a time (a few MB: the conversion stays in the processor's cache).
CHUNK_VOXELS = 1 << 16


@dataclass(frozen=True)
class NetworkConfidence:
    """The image's confidence in [0, 1] (None where no voxel was possibly foreground) and each label's (label
    value -> confidence, for the labels possible somewhere), with their voxel counts at `POSSIBLE`."""
    image: Optional[float]
    levels: dict = field(default_factory=dict)
    possible_voxels: dict = field(default_factory=dict)


def _candidate_exponentials(logits: np.ndarray) -> tuple:
    """(exp of the logits less their maximum, per voxel (labels, voxels); their sums) at the voxels where some
    foreground label may be possible: the softmax's numerators and denominators, left undivided. Read in chunks
    converted to float32 (half-precision maths is slow; a whole float32 copy is not needed)."""
    flat = logits.reshape(logits.shape[0], -1)
    parts = []
    for start in range(0, flat.shape[1], CHUNK_VOXELS):
        values = flat[:, start:start + CHUNK_VOXELS].astype(np.float32)
        candidates = np.flatnonzero(values[1:].max(axis=0) > values[0] - CANDIDATE_LOGIT_GAP)
        parts.append(np.take(values, candidates, axis=1))
    chosen = np.concatenate(parts, axis=1) if parts else np.zeros((flat.shape[0], 0), np.float32)
    chosen -= chosen.max(axis=0, keepdims=True, initial=-np.inf)
    np.exp(chosen, out=chosen)
    return chosen, chosen.sum(axis=0)


def network_confidence(logits: np.ndarray) -> NetworkConfidence:
    """`NetworkConfidence` of logits shaped (labels, ...) with label 0 the background (any float dtype)."""
    exponentials, sums = _candidate_exponentials(np.asarray(logits))
    sure = (exponentials[1:] > SURE * sums).sum(axis=1)  # probability > SURE, without dividing
    possible = (exponentials[1:] > POSSIBLE * sums).sum(axis=1)
    levels = {value: float(s / p) for value, s, p in zip(range(1, len(possible) + 1), sure, possible) if p}
    counts = {value: int(p) for value, p in zip(range(1, len(possible) + 1), possible) if p}
    image = float(sure.sum() / possible.sum()) if possible.sum() else None
    return NetworkConfidence(image, levels, counts)
