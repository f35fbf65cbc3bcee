"""Manifest -> nnU-Net v2 raw dataset, checking every pair before anything is written.

The input channel is named by the images' contrasts (`T2w`, `UNIT1`, `T1w-INV1+T1w-INV2` ...: see
`bids.channel_name`), read from their file names.
Images and labels are stored reoriented to SCT's LPI (nibabel RAS) and dataset.json says so
(`image_orientation`), so inference reorients exactly as it did for training. Label modes:
- level: values as they are (2=C2 ... 9=T1), labels named lvl1..lvlN as in the published models;
- binary: every rootlet is 1;
- recode: an explicit map such as {2: 1, 3: 1, 9: 0} (values not in the map are refused).
`splits_final.json` holds k folds of the training cases, split by subject (never by image), from a seed.
"""

import json
from collections import Counter
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import nibabel as nib
import numpy as np
import pandas as pd

from sct_rootlets.errors import InputImageError
from sct_rootlets.io.bids import card_contrast, channel_name
from sct_rootlets.io.image import check_same_grid, load_input_image, load_label_image, nifti_stem
from sct_rootlets.training.manifest import DatasetError, read_manifest

LABEL_MODES = ("level", "binary", "recode")
MAX_LEVEL = 9


@dataclass(frozen=True)
class LabelScheme:
    mode: str
    recode: Optional[dict] = None

    def allowed_values(self) -> Optional[set]:
        if self.mode == "level":
            return set(range(0, MAX_LEVEL + 1))
        if self.mode == "recode":
            return {0, *self.recode}
        return None

    def apply(self, labels: np.ndarray) -> np.ndarray:
        if self.mode == "binary":
            return (labels > 0).astype(np.uint8)
        if self.mode == "recode":
            lookup = np.zeros(int(max(labels.max(), max(self.recode))) + 1, np.uint8)
            for source, target in self.recode.items():
                lookup[source] = target
            return lookup[labels]
        return labels.astype(np.uint8)

    def label_names(self) -> dict:
        if self.mode == "binary":
            return {"background": 0, "rootlets": 1}
        highest = MAX_LEVEL if self.mode == "level" else max(self.recode.values())
        return {"background": 0, **{f"lvl{value}": value for value in range(1, highest + 1)}}


def parse_recode(text: str) -> dict:
    """'2:1,3:1,9:0' -> {2: 1, 3: 1, 9: 0}."""
    try:
        pairs = [item.split(":") for item in text.replace(" ", "").split(",") if item]
        recode = {int(source): int(target) for source, target in pairs}
    except ValueError:
        raise DatasetError(f"Recode map {text!r} must look like 2:1,3:1,9:0.") from None
    if not recode or min(recode) < 1 or min(recode.values()) < 0 or max(recode.values()) > 255:
        raise DatasetError(f"Recode map {text!r} must map positive labels to values 0..255.")
    return recode


def manifest_channel_name(table: pd.DataFrame) -> str:
    """dataset.json's channel name: the contrasts of the manifest's images (as model cards name them), so that
    the exported model's card lists what it was trained on."""
    return channel_name(card_contrast(nifti_stem(Path(image))) for image in table.image)


def case_id(row) -> str:
    return nifti_stem(Path(row.image))


def _check_pair(bids_root: Path, row, scheme: LabelScheme, allow_empty: bool) -> list:
    """Problems of one image/label pair, as sentences (empty list: fine)."""
    where = f"{row.image}"
    try:
        image = load_input_image(bids_root / row.image)
        label = load_label_image(bids_root / row.label, "label map")
        check_same_grid(image, label)
    except InputImageError as exc:
        return [f"{where}: {exc}"]
    values = set(np.unique(label.data).astype(int).tolist())
    allowed = scheme.allowed_values()
    problems = []
    if allowed is not None and not values <= allowed:
        problems.append(f"{row.label}: label value(s) {sorted(values - allowed)} out of range for the "
                        f"{scheme.mode} mode")
    elif not allow_empty and not scheme.apply(label.data.astype(int)).any():
        problems.append(f"{row.label}: no rootlet left (use -allow-empty to keep empty labels)")
    return problems


def check_manifest(bids_root: Path, table: pd.DataFrame, scheme: LabelScheme, allow_empty: bool) -> None:
    """Raise DatasetError listing every problem, before anything is written."""
    problems = []
    both = sorted(set(table[table.split == "train"].subject) & set(table[table.split == "test"].subject))
    if both:
        problems.append(f"subject(s) {', '.join(both)} in both train and test (split by subject, not image)")
    counts = Counter(case_id(row) for row in table.itertuples())
    duplicated = sorted(case for case, count in counts.items() if count > 1)
    if duplicated:
        problems.append(f"image(s) listed twice: {', '.join(duplicated)}")
    if (table.split == "train").sum() == 0:
        problems.append("no training image")
    for row in table.itertuples():
        problems += _check_pair(bids_root, row, scheme, allow_empty)
    if problems:
        raise DatasetError(f"The dataset was not written: {'; '.join(problems)}.")


def subject_folds(table: pd.DataFrame, folds: int, seed: int) -> list:
    """nnU-Net's splits_final.json: k folds of the training cases, every subject's cases in one fold."""
    train = table[table.split == "train"]
    subjects = list(np.random.default_rng(seed).permutation(sorted(set(train.subject))))
    folds = max(1, min(folds, len(subjects)))
    fold_of = {subject: index % folds for index, subject in enumerate(subjects)}
    cases = [(case_id(row), fold_of[row.subject]) for row in train.itertuples()]
    if folds == 1:
        return [{"train": sorted(c for c, _ in cases), "val": sorted(c for c, _ in cases)}]
    return [{"train": sorted(c for c, f in cases if f != k), "val": sorted(c for c, f in cases if f == k)}
            for k in range(folds)]


def parse_fold_subjects(text: str) -> list:
    """'sub-01,sub-02;sub-03' -> [['sub-01', 'sub-02'], ['sub-03']] (the 'sub-' prefix may be left out)."""
    groups = [[name if name.startswith("sub-") else f"sub-{name}" for name in group.split(",") if name]
              for group in text.replace(" ", "").split(";")]
    if not all(groups):
        raise DatasetError(f"Fold subjects {text!r} must look like sub-01,sub-02;sub-03 (no empty fold).")
    return groups


def grouped_folds(table: pd.DataFrame, groups: list) -> list:
    """splits_final.json with chosen validation subjects per fold; each fold trains on all other subjects."""
    train = table[table.split == "train"]
    unknown = sorted({name for group in groups for name in group} - set(train.subject))
    if unknown:
        raise DatasetError(f"Fold subject(s) {', '.join(unknown)} have no training image in the manifest.")
    cases = [(case_id(row), row.subject) for row in train.itertuples()]
    return [{"train": sorted(c for c, s in cases if s not in group), "val": sorted(c for c, s in cases if s in group)}
            for group in groups]


def _write_reoriented(source: Path, target: Path, labels_fn=None) -> None:
    """Save `source` reoriented to RAS (SCT LPI); `labels_fn` turns a label map into the dataset's values."""
    image = nib.load(source)
    if labels_fn is not None:
        image = nib.Nifti1Image(labels_fn(np.rint(np.asanyarray(image.dataobj)).astype(int)), image.affine,
                                image.header)
        image.set_data_dtype(np.uint8)
    nib.save(nib.as_closest_canonical(image), target)


def build_dataset(bids_root, manifest, output_raw, *, dataset_id: int, name: str, scheme: LabelScheme,
                  folds: int = 5, seed: int = 0, allow_empty: bool = False, overwrite: bool = False,
                  fold_subjects: Optional[list] = None) -> Path:
    """Write `<output_raw>/Dataset<ID>_<name>/` (imagesTr, labelsTr, imagesTs, labelsTs, dataset.json,
    splits_final.json, the manifest used) atomically; return its folder. `fold_subjects` (a list of subject
    groups) sets each fold's validation subjects instead of `folds` random ones."""
    bids_root, output_raw = Path(bids_root), Path(output_raw)
    table = read_manifest(manifest)
    check_manifest(bids_root, table, scheme, allow_empty)
    splits = grouped_folds(table, fold_subjects) if fold_subjects else subject_folds(table, folds, seed)
    target = output_raw / f"Dataset{dataset_id:03d}_{name}"
    if target.exists() and not overwrite:
        raise DatasetError(f"{target} already exists; use -overwrite to rebuild it.")
    output_raw.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=output_raw))
    try:
        for folder in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
            (staging / folder).mkdir()
        for row in table.itertuples():
            suffix = "Tr" if row.split == "train" else "Ts"
            case = case_id(row)
            _write_reoriented(bids_root / row.image, staging / f"images{suffix}" / f"{case}_0000.nii.gz")
            _write_reoriented(bids_root / row.label, staging / f"labels{suffix}" / f"{case}.nii.gz", scheme.apply)
        dataset_json = {"channel_names": {"0": manifest_channel_name(table)}, "labels": scheme.label_names(),
                        "numTraining": int((table.split == "train").sum()), "file_ending": ".nii.gz",
                        "image_orientation": "LPI", "label_mode": scheme.mode,
                        **({"recode": {str(k): v for k, v in scheme.recode.items()}} if scheme.recode else {})}
        (staging / "dataset.json").write_text(json.dumps(dataset_json, indent=2) + "\n")
        (staging / "splits_final.json").write_text(json.dumps(splits, indent=2) + "\n")
        shutil.copyfile(manifest, staging / "manifest.tsv")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)
