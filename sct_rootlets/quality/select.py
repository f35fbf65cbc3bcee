"""The next images to correct: the uncorrected ones whose predictions score lowest, optionally spread over subjects
and sites so that one hard subject or one scanner does not fill a whole round of corrections.

Only scored images are chosen: an image without a prediction, or whose prediction's sidecar holds no quality record
(made before scores existed), cannot be ranked; the pool names them so that the caller reports them. Where the
predictions lie and what counts as a correction are the caller's rules (`sct_rootlets_dataset select` takes the
review's), handed in as functions.
"""

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from sct_rootlets.io import bids
from sct_rootlets.io.outputs import sidecar_path
from sct_rootlets.quality.record import Quality, read_quality

#: participants.tsv columns that name a subject's site, in the order looked for (spine-generic: institution_id).
SITE_COLUMNS = ("site", "institution_id", "institution", "center", "centre")
#: The site of a subject that participants.tsv does not place: all such subjects form one group.
UNKNOWN_SITE = "n/a"


@dataclass(frozen=True)
class Candidate:
    """A scored image not corrected yet; `name` is its path in the dataset, as qc_fail.yml lists name it."""
    name: str
    subject: str
    site: str
    quality: Quality


@dataclass(frozen=True)
class Pool:
    """What a dataset offers: the scored candidates, and the names of the images that are not candidates."""
    scored: tuple
    corrected: tuple
    without_prediction: tuple
    without_quality: tuple
    site_column: Optional[str]


def participant_sites(dataset) -> tuple:
    """(column, {subject: site}) from the dataset's participants.tsv, by the first of SITE_COLUMNS it has;
    (None, {}) without the file or such a column. Empty and "n/a" values leave the subject unplaced."""
    try:
        with open(Path(dataset) / "participants.tsv", encoding="utf-8", newline="") as stream:
            rows = list(csv.DictReader(stream, delimiter="\t"))
    except (OSError, UnicodeDecodeError, csv.Error):
        return None, {}
    columns = rows[0].keys() if rows else ()
    column = next((name for name in SITE_COLUMNS if name in columns), None)
    if column is None or "participant_id" not in columns:
        return None, {}
    return column, {row["participant_id"]: row[column].strip() for row in rows
                    if (row[column] or "").strip() not in ("", UNKNOWN_SITE)}


def candidate_pool(dataset, *, suffix=bids.DEFAULT_SUFFIX,
                   prediction_of: Callable[[bids.BidsImage], Optional[Path]],
                   is_corrected: Callable[[bids.BidsImage], bool]) -> Pool:
    """Sort the dataset's images (those `suffix` selects) into candidates and the rest: corrected, without a
    prediction (`prediction_of` returns None), without a quality record in the prediction's sidecar."""
    dataset = Path(dataset)
    column, sites = participant_sites(dataset)
    scored, corrected, without_prediction, without_quality = [], [], [], []
    for image in bids.discover(dataset, suffix)[0]:
        name = image.path.relative_to(dataset).as_posix()
        if is_corrected(image):
            corrected.append(name)
            continue
        prediction = prediction_of(image)
        quality = read_quality(sidecar_path(prediction)) if prediction is not None else None
        if prediction is None:
            without_prediction.append(name)
        elif quality is None:
            without_quality.append(name)
        else:
            scored.append(Candidate(name, image.subject, sites.get(image.subject, UNKNOWN_SITE), quality))
    return Pool(tuple(scored), tuple(corrected), tuple(without_prediction), tuple(without_quality), column)


def worst_first(candidates) -> list:
    """Lowest score first; equal scores by the image's path in the dataset."""
    return sorted(candidates, key=lambda candidate: (candidate.quality.score, candidate.name))


def round_robin(candidates: list, group_of: Callable[[Candidate], str]) -> list:
    """`candidates` in rounds: each group's first (in the given order), then each group's second, and so on; within
    a round, the given order."""
    taken = Counter()
    rounds = []
    for candidate in candidates:
        group = group_of(candidate)
        rounds.append(taken[group])
        taken[group] += 1
    return [candidate for _, candidate in sorted(zip(rounds, candidates), key=lambda pair: pair[0])]


def choose(candidates, count: int, *, diverse: bool = False) -> list:
    """The `count` worst candidates; with `diverse`, taken in rounds over sites, and within a site in rounds over
    its subjects, worst first within each round."""
    ordered = worst_first(candidates)
    if diverse:
        ordered = round_robin(round_robin(ordered, lambda candidate: candidate.subject),
                              lambda candidate: candidate.site)
    return ordered[:count]
