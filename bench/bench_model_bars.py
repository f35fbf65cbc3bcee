"""A rootlets model against issue 7's bars for a starter model (binary and per-level Dice, level correctness on
generated volumes; plausibility on a real scan).

    .venv/bin/sct_rootlets_synth -pam50 ../shared/data/pam50 -o /tmp/synth_test -n 20 -seed 5000
    .venv/bin/python bench/bench_model_bars.py synthetic --model MODEL --data /tmp/synth_test \
        [--region fast --engine auto]
    .venv/bin/python bench/bench_model_bars.py real --model MODEL --image ../shared/data/real/sub-fakelesion_T2w.nii.gz \
        --cord ../shared/data/real/sub-fakelesion_T2w_label-SC_seg.nii.gz

`synthetic`: per volume, binary Dice and the mean Dice over the levels present in truth or prediction (both from
`sct_rootlets.metrics.evaluate`), and over all volumes the share of predicted rootlet voxels touching a true
rootlet (same voxel or a 26-neighbour) whose level is the level of the nearest true rootlet voxel.
`real` (no ground truth): the share of predicted voxels outside the cord mask and within 15 mm of it, and whether
the levels' mean superior-inferior positions are ordered rostro-caudally (C2 highest).
`--model` is a model name or folder (default: what `sct_deepseg_rootlets` uses without -model). `--region`
predicts as `sct_deepseg_rootlets -region` does, around the cord the bundled cord model computes (default: whole,
nnU-Net's stock prediction).
"""

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import ndimage

from sct_rootlets.image import load_input_image, load_label_image
from sct_rootlets.inference import InferenceSession
from sct_rootlets.metrics import evaluate
from sct_rootlets.models import resolve_model
from sct_rootlets.options import ENGINES, REGION_MODES


def level_correctness(truth: np.ndarray, prediction: np.ndarray) -> tuple:
    """(predicted voxels touching a true rootlet, of which with the nearest true voxel's level)."""
    touching = (prediction > 0) & ndimage.binary_dilation(truth > 0, structure=np.ones((3, 3, 3), bool))
    _, nearest = ndimage.distance_transform_edt(truth == 0, return_indices=True)
    nearest_level = truth[tuple(nearest)]
    return int(touching.sum()), int((touching & (prediction == nearest_level)).sum())


def _cord_for(session):
    """The cord each prediction is restricted to: computed, as a run without -s computes it (None: whole image)."""
    if session.region == "whole":
        return lambda image: None
    from sct_rootlets.cord.segment import CordMasks

    masks = CordMasks(device="cpu")
    return lambda image: masks.get(image)[0]


def synthetic(args, session) -> None:
    data = Path(args.data)
    cord_for = _cord_for(session)
    rows, touching, correct = [], 0, 0
    for image_path in sorted(data.glob("sub-*/anat/*_T2w.nii.gz")):
        labels = data / "derivatives/labels" / image_path.parent.relative_to(data)
        truth = load_label_image(labels / image_path.name.replace("_T2w.nii.gz", "_T2w_label-rootlets_dseg.nii.gz"),
                                 "rootlets").data.astype(np.uint8)
        image = load_input_image(image_path)
        prediction = session.predict(image, cord_for(image))
        table = evaluate(truth, prediction, image.nifti.affine, image.zooms).set_index("level")
        levels = table.drop(index="all")
        n_touching, n_correct = level_correctness(truth, prediction)
        touching, correct = touching + n_touching, correct + n_correct
        row = {"image": image_path.name, "binary_dice": round(float(table.loc["all", "dice"]), 4),
               "mean_level_dice": round(float(levels["dice"].mean()), 4), "levels": len(levels),
               "touching": n_touching, "right_level": n_correct}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps({"volumes": len(rows),
                      "binary_dice_mean": round(float(np.mean([r["binary_dice"] for r in rows])), 4),
                      "mean_level_dice_mean": round(float(np.mean([r["mean_level_dice"] for r in rows])), 4),
                      "right_level_share": round(correct / max(touching, 1), 4)}))


def real(args, session) -> None:
    image = load_input_image(Path(args.image))
    cord = load_label_image(Path(args.cord), "cord mask").data > 0
    prediction = session.predict(image)
    rootlets = prediction > 0
    distance_mm = ndimage.distance_transform_edt(~cord, sampling=image.zooms)
    near = rootlets & ~cord & (distance_mm <= 15.0)
    superior = {}
    for level in np.unique(prediction[rootlets]):
        index = np.argwhere(prediction == level)
        superior[int(level)] = float((image.nifti.affine[:3, :3] @ index.mean(axis=0) + image.nifti.affine[:3, 3])[2])
    ordered = sorted(superior)
    print(json.dumps({"predicted_voxels": int(rootlets.sum()),
                      "outside_cord_within_15mm_share": round(float(near.sum() / max(rootlets.sum(), 1)), 4),
                      "mean_superior_mm_by_level": {k: round(v, 1) for k, v in superior.items()},
                      "rostro_caudal_order": all(superior[a] > superior[b] for a, b in zip(ordered, ordered[1:]))}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("synthetic", "real"))
    parser.add_argument("--model", help="Model name or folder. Default: what sct_deepseg_rootlets uses.")
    parser.add_argument("--data", help="BIDS dataset written by sct_rootlets_synth (synthetic).")
    parser.add_argument("--image", help="Image (real).")
    parser.add_argument("--cord", help="Its cord mask (real).")
    parser.add_argument("--region", choices=REGION_MODES, default="whole", help="As sct_deepseg_rootlets -region.")
    parser.add_argument("--engine", choices=ENGINES, default="torch", help="As sct_deepseg_rootlets -engine.")
    args = parser.parse_args()
    session = InferenceSession(resolve_model(args.model), device="cpu", region=args.region, engine=args.engine)
    (synthetic if args.command == "synthetic" else real)(args, session)


if __name__ == "__main__":
    main()
