"""Subjects per hour: the native runner (model loaded once) vs one sct_deepseg_rootlets process per subject.

    .venv/bin/python bench/bench_batch.py --subjects 8 --shape 96 96 48

Both use the same model (the tests' tiny nnU-Net v2 model, 2 folds) and the same generated BIDS dataset;
results are appended to bench/RESULTS.md by hand from the printed table.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import tiny_model  # noqa: E402
from conftest import ras_image, synthetic_t2w  # noqa: E402

BIN = Path(sys.executable).parent


def make_dataset(root: Path, subjects: int, shape) -> Path:
    for index in range(subjects):
        path = root / "ds" / f"sub-{index:02d}" / "anat" / f"sub-{index:02d}_T2w.nii.gz"
        path.parent.mkdir(parents=True)
        nib.save(ras_image(synthetic_t2w(tuple(shape), seed=index)), path)
    return root / "ds"


def timed(command, env) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--shape", type=int, nargs=3, default=(96, 96, 48))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = root / "model"
        tiny_model.build_model_folder(model)
        dataset = make_dataset(root, args.subjects, args.shape)
        env = {**os.environ, "SCT_ROOTLETS_HOME": str(root / "home")}
        images = sorted(dataset.rglob("*_T2w.nii.gz"))
        (root / "single").mkdir()
        per_process = sum(timed([str(BIN / "sct_deepseg_rootlets"), "-i", str(image), "-o",
                                 str(root / "single" / image.name), "-model", str(model), "-device", "cpu",
                                 "-v", "0"], env) for image in images)
        runner = timed([str(BIN / "sct_rootlets_batch"), "-path-data", str(dataset), "-path-output",
                        str(root / "batch"), "-model", str(model), "-device", "cpu", "-no-qc", "-v", "0"], env)
    print("| subjects | shape | one process per subject | native runner |")
    print("|---|---|---|---|")
    print(f"| {args.subjects} | {'x'.join(map(str, args.shape))} | {per_process:.1f} s = "
          f"{3600 * args.subjects / per_process:.0f} subjects/h | {runner:.1f} s = "
          f"{3600 * args.subjects / runner:.0f} subjects/h |")


if __name__ == "__main__":
    main()
