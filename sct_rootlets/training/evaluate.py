"""Predictions vs ground truth over a manifest split: per-image, per-level metrics, a summary, and plots."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from sct_rootlets.io.image import check_same_grid, load_label_image, nifti_stem  # noqa: E402
from sct_rootlets.qc.metrics import evaluate  # noqa: E402
from sct_rootlets.training.manifest import DatasetError, read_manifest  # noqa: E402

SUMMARY_METRICS = ("dice", "slice_dice_mean", "f1", "hd95_mm", "midpoint_error_mm")


def find_prediction(predictions: Path, image_stem: str) -> Path:
    """The prediction of an image: `<stem>_rootlets.nii.gz` or `<stem>_label-rootlets[_desc-*]_dseg.nii.gz`."""
    candidates = sorted(p for pattern in (f"{image_stem}_rootlets.nii.gz", f"{image_stem}_label-rootlets*dseg.nii.gz")
                        for p in Path(predictions).rglob(pattern))
    if len(candidates) != 1:
        raise DatasetError(f"Found {len(candidates)} predictions for {image_stem} in {predictions}; expected one.")
    return candidates[0]


def evaluate_split(bids_root, manifest, predictions, *, split: str = "test") -> pd.DataFrame:
    """One row per image and level (plus the binary row "all"), with subject, session and image columns."""
    table = read_manifest(manifest)
    rows = table[table.split == split]
    if rows.empty:
        raise DatasetError(f"The manifest has no {split} image.")
    frames = []
    for row in rows.itertuples():
        truth = load_label_image(Path(bids_root) / row.label, "ground truth")
        prediction = load_label_image(find_prediction(Path(predictions), nifti_stem(Path(row.image))), "prediction")
        check_same_grid(truth, prediction)
        metrics = evaluate(truth.data.astype(int), prediction.data.astype(int), truth.nifti.affine, truth.zooms)
        metrics.insert(0, "image", Path(row.image).name)
        metrics.insert(0, "session", row.session)
        metrics.insert(0, "subject", row.subject)
        frames.append(metrics)
    return pd.concat(frames, ignore_index=True)


def summarise(per_image: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation of each metric per level, over images."""
    numeric = per_image.assign(level=per_image.level.astype(str))
    grouped = numeric.groupby("level", sort=False)[list(SUMMARY_METRICS)]
    summary = grouped.agg(["mean", "std", "count"])
    summary.columns = [f"{metric}_{stat}" for metric, stat in summary.columns]
    return summary.reset_index()


def plot_per_level(per_image: pd.DataFrame, path: Path) -> None:
    """Box plots of Dice and slice-wise F1 per level."""
    levels = [level for level in per_image.level.astype(str).unique()]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for axis, metric in zip(axes, ("dice", "f1")):
        data = [per_image.loc[per_image.level.astype(str) == level, metric].dropna() for level in levels]
        axis.boxplot(data, tick_labels=levels)
        axis.set_title(metric)
        axis.set_xlabel("level")
        axis.set_ylim(0, 1)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_evaluation(bids_root, manifest, predictions, output, *, split: str = "test") -> dict:
    """Write metrics.csv, summary.csv and per_level.png into `output`; return their paths."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    per_image = evaluate_split(bids_root, manifest, predictions, split=split)
    paths = {"metrics": output / "metrics.csv", "summary": output / "summary.csv", "plot": output / "per_level.png"}
    per_image.to_csv(paths["metrics"], index=False, float_format="%.4f")
    summarise(per_image).to_csv(paths["summary"], index=False, float_format="%.4f")
    plot_per_level(per_image, paths["plot"])
    return paths
