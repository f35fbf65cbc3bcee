"""A rootlets model against issue 7's bars for a starter model (binary and per-level Dice, level correctness on
generated volumes) and issue 14's bars on real scans (plausibility, no ground truth).

    .venv/bin/sct_rootlets_synth -pam50 ../shared/data/pam50 -o /tmp/synth_test -n 20 -seed 5000
    .venv/bin/python bench/bench_model_bars.py synthetic --model MODEL --data /tmp/synth_test \
        [--region fast --engine auto]
    .venv/bin/python bench/bench_model_bars.py real --model MODEL \
        --scans ../shared/data/real_bids ../shared/data/real/sub-fakelesion_T2w.nii.gz [--region whole --engine torch]

`synthetic`: per volume, binary Dice and the mean Dice over the levels present in truth or prediction (both from
`sct_rootlets.qc.metrics.evaluate`), and over all volumes the share of predicted rootlet voxels touching a true
rootlet (same voxel or a 26-neighbour) whose level is the level of the nearest true rootlet voxel.
`real`: each `--scans` argument is a BIDS folder (every `sub-*/anat/sub-*_T2w.nii.gz` with a manual cord mask
`derivatives/labels/sub-*/anat/<stem>_label-SC_seg.nii.gz`) or an image (cord mask `<stem>_label-SC_seg.nii.gz`
beside it); `--image IMAGE [--cord MASK]` adds one more. Each scan is predicted as `sct_deepseg_rootlets` does
without options (default region around the cord the bundled cord model computes, default engine); the MANUAL cord
mask is used only for scoring. One JSON line per scan, then a summary. Bars: at least 20 rootlet voxels; a share of
at least 0.90 of them outside the cord and within 15 mm of it; the levels' mean world superior positions strictly
decreasing from C2 down; and, where `<stem>_desc-vertcentre_dlabel.nii.gz` (vertebral body centres, 2 = C2,
9 = T2) is beside the cord mask, a share of at least 0.90 between 20 mm above the C2 centre and the T2 centre.
`passes` combines the bars that apply.
`--model` is a model name or folder (default: what `sct_deepseg_rootlets` uses without -model). `--region`,
`--engine`, `--order-levels` and `--canal-mm` are as `sct_deepseg_rootlets`'s options of those names, computing the cord
as a run without -s does (defaults: the product's for `real`; whole and torch for `synthetic`; levels ordered for
both, as every run orders them; `--region whole --order-levels 0` is nnU-Net's stock prediction).
"""

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import ndimage

from sct_rootlets.io.image import check_same_grid, load_input_image, load_label_image
from sct_rootlets.inference.session import InferenceSession
from sct_rootlets.qc.metrics import evaluate
from sct_rootlets.store.resolve import resolve_model
from sct_rootlets.options import DEFAULT_CANAL_MM, DEFAULT_REGION, ENGINES, REGION_MODES
from sct_rootlets.anatomy.postprocess import PostProcessing


def level_correctness(truth: np.ndarray, prediction: np.ndarray) -> tuple:
    """(predicted voxels touching a true rootlet, of which with the nearest true voxel's level)."""
    touching = (prediction > 0) & ndimage.binary_dilation(truth > 0, structure=np.ones((3, 3, 3), bool))
    _, nearest = ndimage.distance_transform_edt(truth == 0, return_indices=True)
    nearest_level = truth[tuple(nearest)]
    return int(touching.sum()), int((touching & (prediction == nearest_level)).sum())


def _cord_for(session, engine: str = "auto"):
    """The cord each prediction is restricted to: computed, as a run without -s computes it (None: whole image)."""
    if session.region == "whole":
        return lambda image: None
    from sct_rootlets.anatomy.cord import CordMasks

    masks = CordMasks(device="cpu", engine=engine)
    return lambda image: masks.get(image)[0]


def _predictor(args, session, engine: str = "auto"):
    """image -> label map as `sct_deepseg_rootlets` writes it with -region/-engine/-order-levels/-canal-mm."""
    cord_for = _cord_for(session, engine)
    postprocessing = PostProcessing(order_levels=bool(args.order_levels), canal_mm=args.canal_mm)

    def predict(image):
        cord = cord_for(image)
        return postprocessing.apply(session.predict(image, cord), image.zooms, image.nifti.affine, cord=cord)
    return predict


def synthetic(args, session) -> None:
    data = Path(args.data)
    predict = _predictor(args, session)
    rows, touching, correct = [], 0, 0
    for image_path in sorted(data.glob("sub-*/anat/*_T2w.nii.gz")):
        labels = data / "derivatives/labels" / image_path.parent.relative_to(data)
        truth = load_label_image(labels / image_path.name.replace("_T2w.nii.gz", "_T2w_label-rootlets_dseg.nii.gz"),
                                 "rootlets").data.astype(np.uint8)
        image = load_input_image(image_path)
        prediction = predict(image)
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


def _beside(image_path: Path, folder: Path) -> tuple:
    """(manual cord mask, vertebral centres or None) named after the image, in `folder`."""
    stem = image_path.name.split(".nii")[0]
    centres = folder / f"{stem}_desc-vertcentre_dlabel.nii.gz"
    return folder / f"{stem}_label-SC_seg.nii.gz", centres if centres.is_file() else None


def real_scans(args) -> list:
    """(image, manual cord mask, vertebral centres or None) for each scan of --scans, then --image/--cord."""
    scans = []
    for given in map(Path, args.scans):
        if not given.is_dir():
            scans.append((given, *_beside(given, given.parent)))
            continue
        for image_path in sorted(given.glob("sub-*/anat/sub-*_T2w.nii.gz")):
            cord, centres = _beside(image_path, given / "derivatives/labels" / image_path.parent.relative_to(given))
            if cord.is_file():
                scans.append((image_path, cord, centres))
    if args.image:
        cord, centres = _beside(Path(args.image), Path(args.image).parent)
        scans.append((Path(args.image), Path(args.cord) if args.cord else cord, centres))
    return scans


def superior_mm(affine: np.ndarray, index: np.ndarray) -> np.ndarray:
    """World superior coordinate (RAS z) of voxel indices (n, 3)."""
    return index @ affine[2, :3] + affine[2, 3]


def real_bars(image, cord: np.ndarray, prediction: np.ndarray, centres=None) -> dict:
    """Issue 14's bars for one prediction, scored against the manual `cord` (and vertebral `centres` if given)."""
    affine, rootlets = image.nifti.affine, prediction > 0
    count = int(rootlets.sum())
    distance_mm = ndimage.distance_transform_edt(~cord, sampling=image.zooms)
    near = float((rootlets & ~cord & (distance_mm <= 15.0)).sum() / max(count, 1))
    superior, levels = superior_mm(affine, np.argwhere(rootlets)), prediction[rootlets]
    by_level = {int(level): float(superior[levels == level].mean()) for level in np.unique(levels)}
    means = [by_level[level] for level in sorted(by_level)]
    ordered = all(a > b for a, b in zip(means, means[1:]))
    row = {"predicted_voxels": count, "outside_cord_within_15mm_share": round(near, 4),
           "mean_superior_mm_by_level": {k: round(v, 1) for k, v in by_level.items()}, "rostro_caudal_order": ordered}
    passes = count >= 20 and near >= 0.90 and ordered
    if centres is not None:
        c2, t2 = (superior_mm(affine, np.argwhere(centres == value)).mean() for value in (2, 9))
        window = float(((superior >= t2) & (superior <= c2 + 20.0)).sum() / max(count, 1))
        row.update({"c2_plus_20mm_superior_mm": round(float(c2) + 20.0, 1), "t2_superior_mm": round(float(t2), 1),
                    "c2_plus_20mm_to_t2_share": round(window, 4)})
        passes = passes and window >= 0.90
    return {**row, "passes": bool(passes)}


def real(args, session) -> None:
    scans = real_scans(args)
    if not scans:
        raise SystemExit("No scan with a manual cord mask in --scans/--image.")
    predict, passing = _predictor(args, session, args.engine), 0
    for image_path, cord_path, centres_path in scans:
        image = load_input_image(image_path)
        labels = [load_label_image(cord_path, "cord mask")]
        if centres_path is not None:
            labels.append(load_label_image(centres_path, "vertebral centres"))
            if not all(np.any(labels[1].data == value) for value in (2, 9)):
                raise SystemExit(f"{centres_path} lacks the C2 (2) or T2 (9) centre.")
        check_same_grid(image, *labels)
        prediction = predict(image)
        row = real_bars(image, labels[0].data > 0, prediction, labels[1].data if centres_path else None)
        passing += row["passes"]
        print(json.dumps({"image": str(image_path), **row}), flush=True)
    print(json.dumps({"model": session.model.name, "region": session.region, "engine": session.engine,
                      "scans": len(scans), "passing": passing}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("synthetic", "real"))
    parser.add_argument("--model", help="Model name or folder. Default: what sct_deepseg_rootlets uses.")
    parser.add_argument("--data", help="BIDS dataset written by sct_rootlets_synth (synthetic).")
    parser.add_argument("--scans", nargs="+", default=[], help="BIDS folders or images (real).")
    parser.add_argument("--image", help="One more image (real).")
    parser.add_argument("--cord", help="Its cord mask (real; default: <stem>_label-SC_seg.nii.gz beside it).")
    parser.add_argument("--region", choices=REGION_MODES,
                        help=f"As sct_deepseg_rootlets -region. Default: {DEFAULT_REGION} (real), whole (synthetic).")
    parser.add_argument("--engine", choices=ENGINES, help="As sct_deepseg_rootlets -engine. Default: auto (real), "
                                                          "torch (synthetic).")
    parser.add_argument("--order-levels", type=int, choices=(0, 1), default=1,
                        help="As sct_deepseg_rootlets -order-levels. Default: 1.")
    parser.add_argument("--canal-mm", type=float, default=DEFAULT_CANAL_MM,
                        help=f"As sct_deepseg_rootlets -canal-mm (0: off). Default: {DEFAULT_CANAL_MM}.")
    args = parser.parse_args()
    product = args.command == "real"
    args.region = args.region or (DEFAULT_REGION if product else "whole")
    args.engine = args.engine or ("auto" if product else "torch")
    session = InferenceSession(resolve_model(args.model), device="cpu", region=args.region, engine=args.engine)
    (synthetic if args.command == "synthetic" else real)(args, session)


if __name__ == "__main__":
    main()
