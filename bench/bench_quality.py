"""Does the quality score rank predictions as their Dice does? (issue 29)

Generates labelled volumes (`sct_rootlets_synth`, a seed not used to tune the score), degrades each with every
kind of `sct_rootlets.synthetic.degrade` at graded strengths, segments them all with one `sct_rootlets_batch` run
(the default model: offline, the bundled starter; the default fast region with the bundled cord model), and
compares each image's and each level's score with its Dice against the exact labels: Spearman's rho, and how many of
the worst quarter by score are in the worst quarter by Dice. Writes `<work>/quality.csv`, `<work>/levels.csv`, and
the plot of score against Dice.

    python bench/bench_quality.py -work /tmp/quality -n 6 -seed 9100 -plot bench/quality_score_vs_dice.png
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from sct_rootlets.anatomy.level_names import spinal_level_name
from sct_rootlets.qc.metrics import dice
from sct_rootlets.quality.record import read_quality
from sct_rootlets.synthetic.degrade import DEGRADATIONS, degrade_case, degraded_name

GRADES = (0.35, 0.7, 1.0)


def make_dataset(work: Path, count: int, seed: int) -> list:
    """Clean volumes, then each degradation at each grade, as one BIDS dataset; truth kept outside it."""
    clean = work / "clean"
    if not clean.exists():
        subprocess.run([Path(sys.executable).parent / "sct_rootlets_synth", "-o", clean, "-n", str(count),
                        "-seed", str(seed)], check=True)
    rng = np.random.default_rng(seed)
    cases = []
    for image in sorted(clean.glob("sub-*/anat/sub-*_T2w.nii.gz")):
        subject = image.name.split("_")[0]
        truth = clean / "derivatives" / "labels" / subject / "anat" / image.name.replace(".nii.gz",
                                                                                          "_label-rootlets_dseg.nii.gz")
        for kind, grade in [("noise", 0.0)] + [(k, g) for k in DEGRADATIONS for g in GRADES]:
            name = degraded_name(image, kind, grade)
            target = work / "degraded" / subject / "anat" / f"{name}.nii.gz"
            target_truth = work / "truth" / f"{name}.nii.gz"
            if not target.exists():
                degrade_case(rng, image, [truth], target, [target_truth], kind, grade)
            cases.append({"image": target.name, "subject": subject, "kind": kind if grade else "clean",
                          "grade": grade, "truth": target_truth})
    (work / "degraded" / "dataset_description.json").write_text(json.dumps({"Name": "degraded",
                                                                             "BIDSVersion": "1.9.0"}))
    return cases


def dice_per_level(truth: np.ndarray, prediction: np.ndarray) -> dict:
    """Dice of each level in the truth or the prediction (a level in only one of them: 0)."""
    levels = sorted((set(np.unique(truth)) | set(np.unique(prediction))) - {0})
    return {int(level): dice(truth == level, prediction == level) for level in levels}


def worst_quarter_overlap(score: np.ndarray, dice: np.ndarray) -> tuple:
    quarter = len(score) // 4
    by_score = set(np.argsort(score, kind="stable")[:quarter])
    by_dice = set(np.argsort(dice, kind="stable")[:quarter])
    return len(by_score & by_dice), quarter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-work", required=True, type=Path)
    parser.add_argument("-n", type=int, default=6)
    parser.add_argument("-seed", type=int, default=9100)
    parser.add_argument("-plot", type=Path)
    args = parser.parse_args()
    cases = make_dataset(args.work, args.n, args.seed)
    predictions = args.work / "pred"
    started = time.perf_counter()
    subprocess.run([Path(sys.executable).parent / "sct_rootlets_batch", "-path-data", args.work / "degraded",
                    "-path-output", predictions, "-no-qc", "-resume"], check=True)
    print(f"batch: {time.perf_counter() - started:.0f} s for {len(cases)} images")
    images, levels = [], []
    for case in cases:
        stem = case["image"].replace(".nii.gz", "")
        folder = predictions / "derivatives" / "labels" / case["subject"] / "anat"
        quality = read_quality(folder / f"{stem}_label-rootlets_dseg.json")
        prediction = np.asanyarray(nib.load(folder / f"{stem}_label-rootlets_dseg.nii.gz").dataobj)
        dices = dice_per_level(np.asanyarray(nib.load(case["truth"]).dataobj), prediction)
        images.append({"image": case["image"], "kind": case["kind"], "grade": case["grade"],
                       "dice": np.mean(list(dices.values())) if dices else 0.0, "score": quality.score,
                       "confidence": quality.confidence, "flags": ";".join(quality.flag_names)})
        for level, dice in dices.items():
            level_quality = quality.levels.get(spinal_level_name(level))
            levels.append({"image": case["image"], "level": spinal_level_name(level), "dice": dice,
                           "score": level_quality.score if level_quality else 0.0})
    table, level_table = pd.DataFrame(images), pd.DataFrame(levels)
    table.to_csv(args.work / "quality.csv", index=False, float_format="%.4f")
    level_table.to_csv(args.work / "levels.csv", index=False, float_format="%.4f")
    rho = spearmanr(table.score, table.dice).correlation
    overlap, quarter = worst_quarter_overlap(table.score.to_numpy(), table.dice.to_numpy())
    level_rho = spearmanr(level_table.score, level_table.dice).correlation
    confidence_rho = spearmanr(table.confidence.fillna(0), table.dice).correlation
    print(f"{len(table)} images: Spearman rho(score, Dice) = {rho:.3f} (network confidence alone {confidence_rho:.3f});"
          f" worst quarter by score holds {overlap} of the worst {quarter} by Dice")
    print(f"{len(level_table)} levels: Spearman rho(level score, level Dice) = {level_rho:.3f}")
    print(table.groupby("kind")[["dice", "score"]].mean().round(3).to_string())
    if args.plot:
        plot(table, args.plot, rho, overlap, quarter)


def plot(table: pd.DataFrame, path: Path, rho: float, overlap: int, quarter: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.5, 4.5), constrained_layout=True)
    for kind, group in table.groupby("kind"):
        style = ({"marker": "x", "color": "black", "s": 40} if kind == "clean"
                 else {"s": 18 + 30 * group.grade, "alpha": 0.8})
        axis.scatter(group.dice, group.score, label=kind, **style)
    axis.set_xlabel("Dice against the exact labels (mean over levels)")
    axis.set_ylabel("quality score")
    axis.set_title(f"Spearman rho = {rho:.2f}; worst quarter: {overlap}/{quarter} shared", fontsize=10)
    axis.legend(fontsize=8, title="degradation (size: grade)", title_fontsize=8)
    figure.savefig(path, dpi=110)
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
