"""Dataset manifests: which image/label pairs form a dataset version (the seed project's D1a, D1b, D2 ... lists).

A manifest is a TSV with the columns `subject, session, image, label, split, rater, include, note`; paths are
relative to the BIDS dataset; `split` is train or test; rows with include = no/false/0 are kept for the record but
not used. It is versioned with the dataset, so a model can always be traced to the exact pairs it saw. The rater of
a label is read from its JSON sidecar: the `Author` of the last `{"Name": "Manual", ...}` entry of `GeneratedBy`
(as sct_rootlets_review and manual_correction.py write it).
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from sct_rootlets.io import bids
from sct_rootlets.errors import RootletsError

COLUMNS = ["subject", "session", "image", "label", "split", "rater", "include", "note"]
SPLITS = ("train", "test")
_FALSE = {"no", "false", "0", "n"}


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


def manifest_from_bids(dataset: Path, *, suffix=bids.DEFAULT_SUFFIX, label_suffix: str = "_label-rootlets_dseg",
                       test_fraction: float = 0.2, seed: int = 0, rater: str = "") -> pd.DataFrame:
    """A starting manifest: every image that `suffix` selects (see `bids.ImageSuffix`) with a rootlets label in
    derivatives/labels, split by subject; the rater of each label from its sidecar, else `rater`."""
    dataset = Path(dataset)
    rows = []
    for image in bids.discover(dataset, suffix)[0]:
        label = dataset / "derivatives" / "labels" / image.relative_folder / f"{image.stem}{label_suffix}.nii.gz"
        if label.is_file():
            rows.append({"subject": image.subject, "session": image.session or "",
                         "image": image.path.relative_to(dataset).as_posix(),
                         "label": label.relative_to(dataset).as_posix(), "split": "train",
                         "rater": label_rater(label) or rater,
                         "include": "yes", "note": ""})
    table = pd.DataFrame(rows, columns=COLUMNS)
    subjects = sorted(set(table.subject))
    n_test = int(round(test_fraction * len(subjects)))
    test = set(np.random.default_rng(seed).permutation(subjects)[:n_test])
    table.loc[table.subject.isin(test), "split"] = "test"
    return table


def write_manifest(table: pd.DataFrame, path) -> None:
    table.to_csv(path, sep="\t", index=False)

