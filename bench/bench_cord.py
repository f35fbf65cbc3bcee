"""The cord model against issues 13's and 27's bars: Dice on real scans by models that did not see them, speed,
and the plausibility measures of real and computed cords.

Dice (each fold's model scores the real_bids subjects it held out; a model folder per fold; without --subjects,
every image of --data that has a `_label-SC_seg` mask, whatever its contrast):

    .venv/bin/python bench/bench_cord.py dice --model work/cv/fold0 --subjects errsm11,errsm18 \
        [--data ../shared/data/real_bids] [--engine auto]
    .venv/bin/python bench/bench_cord.py dice --model sct-rootlets-cord --data ../shared/data/real_contrasts
    .venv/bin/python bench/bench_cord.py variants --model work/cv/fold0 --data cord_bids --subjects errsm11,errsm18

`variants` scores the augmented sessions (other fields of view, voxel sizes and poses; sct_rootlets_dataset
augment) of held-out subjects. Speed of the bundled model on a 1 mm 384x216x52 scan:

    .venv/bin/python bench/bench_cord.py speed --image ../shared/data/real_bids/sub-errsm11/anat/sub-errsm11_T2w.nii.gz

`speed` prints the in-process time of `CordSegmenter.segment` (model loaded) with the process's peak RSS, and the
whole-process wall time of `sct_rootlets_cord -i IMAGE` (start-up and imports included; the first run may fill
the OpenVINO cache that later runs use). The plausibility measures (anatomy.plausibility) of every manual mask of
the given datasets and of what a cord model computes on their images (as they are, and with intensities inverted):

    .venv/bin/python bench/bench_cord.py plausibility --model sct-rootlets-cord \
        --data ../shared/data/real_bids ../shared/data/real_contrasts
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _dice_rows(model: str, pairs, engine: str):
    from sct_rootlets.anatomy.cord import CordNotFoundError, CordSegmenter
    from sct_rootlets.io.image import load_input_image, load_label_image
    from sct_rootlets.qc.metrics import dice

    segmenter = CordSegmenter(model=model, device="cpu", engine=engine)
    for image_path, truth_path in pairs:
        image = load_input_image(image_path)
        truth = load_label_image(truth_path, "cord mask").data > 0
        try:
            score = dice(truth, segmenter.segment(image) > 0)
        except CordNotFoundError:
            score = 0.0
        yield {"image": Path(image_path).name, "voxel_mm": [round(float(z), 2) for z in image.zooms],
               "shape": list(image.data.shape), "dice": round(float(score), 4)}


def _labels_of(data: Path, image: Path) -> Path:
    relative = image.relative_to(data)
    return data / "derivatives" / "labels" / relative.parent / image.name.replace(".nii.gz", "_label-SC_seg.nii.gz")


def _labelled_images(data: Path) -> list:
    return [image for image in sorted(data.glob("sub-*/**/anat/*.nii.gz")) if _labels_of(data, image).is_file()]


def dice_command(args) -> None:
    images = ([args.data / f"sub-{s}" / "anat" / f"sub-{s}_T2w.nii.gz" for s in args.subjects.split(",")]
              if args.subjects else _labelled_images(args.data))
    for row in _dice_rows(args.model, [(i, _labels_of(args.data, i)) for i in images], args.engine):
        print(json.dumps(row), flush=True)


def variants_command(args) -> None:
    images = [path for s in args.subjects.split(",")
              for path in sorted(args.data.glob(f"sub-{s}/ses-aug*/anat/*_T2w.nii.gz")) if "ses-aug00" not in str(path)]
    scores = []
    for row in _dice_rows(args.model, [(i, _labels_of(args.data, i)) for i in images], args.engine):
        scores.append(row["dice"])
        print(json.dumps(row), flush=True)
    print(json.dumps({"variants": len(scores), "mean_dice": round(float(np.mean(scores)), 4),
                      "min_dice": round(float(np.min(scores)), 4)}))


def speed_command(args) -> None:
    if args.in_process:
        from sct_rootlets.anatomy.cord import CordSegmenter
        from sct_rootlets.io.image import load_input_image

        segmenter = CordSegmenter(device="cpu", engine=args.engine)
        segmenter.segment(load_input_image(args.image))  # warm: compiled engine, caches
        start = time.perf_counter()
        segmenter.segment(load_input_image(args.image))
        print(json.dumps({"in_process_s": round(time.perf_counter() - start, 2), "peak_rss_gb": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2, 2)}))
        return
    subprocess.run([sys.executable, __file__, "speed", "--image", str(args.image), "--engine", args.engine,
                    "--in-process"], check=True)
    command = str(Path(sys.executable).with_name("sct_rootlets_cord"))
    with tempfile.TemporaryDirectory() as folder:
        for run in range(args.runs):
            start = time.perf_counter()
            subprocess.run([command, "-i", str(args.image), "-o", f"{folder}/seg.nii.gz", "-overwrite", "-engine",
                            args.engine, "-v", "0"], check=True, capture_output=True)
            print(json.dumps({"run": run + 1, "whole_process_s": round(time.perf_counter() - start, 2)}), flush=True)


def plausibility_command(args) -> None:
    import nibabel as nib

    from sct_rootlets.anatomy.cord import CordNotFoundError, CordSegmenter
    from sct_rootlets.anatomy.plausibility import implausibility, measure_cord
    from sct_rootlets.io.image import InputImage, load_input_image

    def report(kind, name, mask, affine):
        measures = measure_cord(mask > 0, affine)
        print(json.dumps({"mask": kind, "image": name, **measures.as_dict(),
                          "implausible": implausibility(measures)}), flush=True)

    segmenter = CordSegmenter(model=args.model, device="cpu", engine=args.engine)
    for data in args.data:
        for image_path in _labelled_images(data):
            truth = nib.load(_labels_of(data, image_path))
            report("manual", image_path.name, np.asanyarray(truth.dataobj), truth.affine)
            image = load_input_image(image_path)
            inverted = image.data.max() - image.data
            for kind, data_array in (("computed", image.data), ("computed on inverted", inverted)):
                try:
                    mask = segmenter.segment(InputImage(image.path, nib.Nifti1Image(data_array, image.nifti.affine,
                                                                                     image.nifti.header), data_array))
                except CordNotFoundError:
                    print(json.dumps({"mask": kind, "image": image_path.name, "found": False}), flush=True)
                    continue
                report(kind, image_path.name, mask, image.nifti.affine)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("dice", "variants"):
        sub = commands.add_parser(name)
        sub.add_argument("--model", required=True, help="Cord model folder (or name).")
        sub.add_argument("--subjects", required=name == "variants", help="Held-out subjects, e.g. errsm11,errsm18.")
        sub.add_argument("--data", type=Path, default=HERE.parent.parent / "shared/data/real_bids")
        sub.add_argument("--engine", default="auto")
    plausibility = commands.add_parser("plausibility")
    plausibility.add_argument("--model", help="Cord model folder or name (default: the bundled one).")
    plausibility.add_argument("--data", type=Path, nargs="+", required=True)
    plausibility.add_argument("--engine", default="auto")
    speed = commands.add_parser("speed")
    speed.add_argument("--image", type=Path, required=True)
    speed.add_argument("--engine", default="auto")
    speed.add_argument("--runs", type=int, default=3)
    speed.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    {"dice": dice_command, "variants": variants_command, "speed": speed_command,
     "plausibility": plausibility_command}[args.command](args)


if __name__ == "__main__":
    main()
