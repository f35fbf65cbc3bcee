"""Dataset manifests: which image/label pairs form a dataset version (the seed project's D1a, D1b, D2 ... lists).

A manifest is a TSV with the columns `subject, session, image, label, split, rater, include, note`; paths are
relative to the BIDS dataset; `split` is train or test; rows with include = no/false/0 are kept for the record but
not used. It is versioned with the dataset, so a model can always be traced to the exact pairs it saw. The rater of
a label is read from its JSON sidecar: the `Author` of the last `{"Name": "Manual", ...}` entry of `GeneratedBy`
(as sct_rootlets_review and manual_correction.py write it). A label without a single labelled voxel is left out
(with one warning): every scan has rootlets (and a cord), and an empty mask is what manual_correction.py creates
when it finds no label to correct, not a correction.
"""

import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from sct_rootlets.io import bids
from sct_rootlets.errors import RootletsError

COLUMNS = ["subject", "session", "image", "label", "split", "rater", "include", "note"]
SPLITS = ("train", "test")
_FALSE = {"no", "false", "0", "n"}
#: How many left-out labels the warning names.
NAMED_IN_WARNING = 5

logger = logging.getLogger(__name__)


class DatasetError(RootletsError):
    """A manifest or its image/label pairs cannot make a dataset."""


def read_manifest(path) -> pd.DataFrame:
    """The included rows of a manifest, checked for columns and split values."""
    try:
        table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError) as exc:
        raise DatasetError(f"Cannot read the manifest {path}: {exc}") from None
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise DatasetError(f"Manifest {path} lacks the column(s) {', '.join(missing)}.")
    bad = sorted(set(table.split) - set(SPLITS))
    if bad:
        raise DatasetError(f"Manifest {path} has split value(s) {', '.join(bad)}; use train or test.")
    return table[~table.include.str.strip().str.lower().isin(_FALSE)].reset_index(drop=True)


def label_rater(label: Path) -> str:
    """The Author of the last "Manual" entry of the label's sidecar `GeneratedBy`, or "" when there is none."""
    sidecar = Path(label).with_name(Path(label).name.replace(".nii.gz", ".json"))
    try:
        generated_by = json.loads(sidecar.read_text(encoding="utf-8")).get("GeneratedBy") or []
    except (OSError, ValueError, AttributeError):
        return ""
    manual = [entry for entry in generated_by if isinstance(entry, dict) and entry.get("Name") == "Manual"]
    return str(manual[-1].get("Author") or "") if manual else ""


def is_empty_label(label: Path) -> bool:
    """Whether a label map holds no labelled voxel (an unreadable one is not called empty: `build` reports it)."""
    try:
        return not np.any(np.asanyarray(nib.load(label).dataobj))
    except Exception:  # nibabel raises many kinds for a broken file
        return False


def _warn_empty(empty: list, dataset: Path) -> None:
    named = ", ".join(label.relative_to(dataset).as_posix() for label in empty[:NAMED_IN_WARNING])
    more = f" and {len(empty) - NAMED_IN_WARNING} more" if len(empty) > NAMED_IN_WARNING else ""
    logger.warning("Left out %d empty label(s), with no labelled voxel (every scan has rootlets; "
                   "-keep-empty-labels keeps them): %s%s.", len(empty), named, more)


def manifest_from_bids(dataset: Path, *, suffix=bids.DEFAULT_SUFFIX, label_suffix: str = "_label-rootlets_dseg",
                       test_fraction: float = 0.2, seed: int = 0, rater: str = "",
                       keep_empty: bool = False) -> pd.DataFrame:
    """A starting manifest: every image that `suffix` selects (see `bids.ImageSuffix`) with a rootlets label in
    derivatives/labels, split by subject; the rater of each label from its sidecar, else `rater`. Empty labels are
    left out with one warning unless `keep_empty`."""
    dataset = Path(dataset)
    rows, empty = [], []
    for image in bids.discover(dataset, suffix)[0]:
        label = dataset / "derivatives" / "labels" / image.relative_folder / f"{image.stem}{label_suffix}.nii.gz"
        if label.is_file() and not keep_empty and is_empty_label(label):
            empty.append(label)
        elif label.is_file():
            rows.append({"subject": image.subject, "session": image.session or "",
                         "image": image.path.relative_to(dataset).as_posix(),
                         "label": label.relative_to(dataset).as_posix(), "split": "train",
                         "rater": label_rater(label) or rater,
                         "include": "yes", "note": ""})
    if empty:
        _warn_empty(empty, dataset)
    table = pd.DataFrame(rows, columns=COLUMNS)
    subjects = sorted(set(table.subject))
    n_test = int(round(test_fraction * len(subjects)))
    test = set(np.random.default_rng(seed).permutation(subjects)[:n_test])
    table.loc[table.subject.isin(test), "split"] = "test"
    return table


def write_manifest(table: pd.DataFrame, path) -> None:
    table.to_csv(path, sep="\t", index=False)

