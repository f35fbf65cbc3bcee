"""Worst first (issue 29): the order a review session lists its images in, and what the page is told of each
prediction's quality record.

The score is the one kept in each prediction's sidecar (`sct_rootlets.quality.record`): in [0, 1], lower where a
rater should look first. Images without a record (predictions made before scores existed, corrections alone) come
after the scored ones, in dataset order: nothing says they need a look sooner.
"""

from typing import Optional

from sct_rootlets.quality.record import Quality

#: `-order`: "worst", the lowest score first; "file", the dataset's order.
ORDERS = ("worst", "file")
DEFAULT_ORDER = "worst"


def ordered(items: list, order: str = DEFAULT_ORDER) -> list:
    """`items` (in dataset order) in the order asked for; equal scores keep the dataset's order."""
    if order not in ORDERS:
        raise ValueError(f"order {order!r} must be one of {ORDERS}")
    if order == "file":
        return list(items)
    return sorted(items, key=lambda item: (item.quality is None, item.quality.score if item.quality else 0.0))


def quality_summary(quality: Optional[Quality]) -> Optional[dict]:
    """The record as the page reads it: score, worst level, each level's score, flags; None without a record."""
    if quality is None:
        return None
    return {"score": quality.score, "worst_level": quality.worst_level,
            "levels": {name: level.score for name, level in quality.levels.items()},
            "flags": [{"name": flag.name, "level": flag.level, "message": flag.message} for flag in quality.flags]}
