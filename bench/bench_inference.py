"""CPU inference baseline on the reference network (issue 8): nnU-Net's stock predictor with SCT's settings vs
this package's inference session, on a generated 0.8 mm 64x320x320 volume.

    .venv/bin/python bench/bench_inference.py --pam50 ../shared/data/pam50 --work /tmp/bench_inference

Steps: render two synthetic volumes, let nnU-Net's default planner plan them (the plans it chose are written to
bench/reference_plans.json), build that network with seeded random weights as a model folder, then time each
engine in its own process (wall time of one prediction after loading; peak RSS of the process).
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def prepare(pam50: Path, work: Path) -> Path:
    import nibabel as nib
    import numpy as np
    import torch

    from sct_rootlets.synth import generate_dataset, load_template
    from sct_rootlets.training.train import nnunet_environment

    raw = work / "nnUNet_raw" / "Dataset900_Reference"
    if not (work / "model").is_dir():
        synth = work / "synth"
        generate_dataset(load_template(pam50), synth, count=2, seed=9000)
        for folder in ("imagesTr", "labelsTr"):
            (raw / folder).mkdir(parents=True, exist_ok=True)
        for index, image in enumerate(sorted(synth.glob("sub-*/anat/*_T2w.nii.gz"))):
            label = synth / "derivatives/labels" / image.parent.relative_to(synth) / image.name.replace(
                "_T2w.nii.gz", "_T2w_label-rootlets_dseg.nii.gz")
            nib.save(nib.as_closest_canonical(nib.load(image)), raw / "imagesTr" / f"case{index}_0000.nii.gz")
            nib.save(nib.as_closest_canonical(nib.load(label)), raw / "labelsTr" / f"case{index}.nii.gz")
        dataset_json = {"channel_names": {"0": "T2w"}, "labels": {"background": 0, **{f"lvl{i}": i for i in
                                                                                       range(1, 10)}},
                        "numTraining": 2, "file_ending": ".nii.gz", "image_orientation": "LPI"}
        (raw / "dataset.json").write_text(json.dumps(dataset_json))
        from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments
        with nnunet_environment(work, data_workers=1):
            extract_fingerprints([900], num_processes=1)
            plan_experiments([900])
        plans = json.loads((work / "nnUNet_preprocessed/Dataset900_Reference/nnUNetPlans.json").read_text())
        (HERE / "reference_plans.json").write_text(json.dumps(plans, indent=1) + "\n")
        from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

        arch = plans["configurations"]["3d_fullres"]["architecture"]
        torch.manual_seed(0)
        network = get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"],
                                         arch["_kw_requires_import"], 1, 10, allow_init=True,
                                         deep_supervision=False)
        trainer = work / "model" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
        (trainer / "fold_0").mkdir(parents=True)
        (trainer / "plans.json").write_text(json.dumps(plans))
        (trainer / "dataset.json").write_text(json.dumps(dataset_json))
        torch.save({"network_weights": network.state_dict(), "trainer_name": "nnUNetTrainer",
                    "init_args": {"configuration": "3d_fullres"}, "inference_allowed_mirroring_axes": (0, 1, 2)},
                   trainer / "fold_0" / "checkpoint_final.pth")
        nib.save(nib.load(raw / "imagesTr" / "case0_0000.nii.gz"), work / "image.nii.gz")
    return work


def run_engine(engine: str, work: Path) -> dict:
    import contextlib
    import io

    import numpy as np
    import torch

    from sct_rootlets.image import load_input_image
    from sct_rootlets.inference import InferenceSession
    from sct_rootlets.models import resolve_model

    torch.set_num_threads(2)
    image = load_input_image(work / "image.nii.gz")
    model = work / "model" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    if engine == "stock":
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        with contextlib.redirect_stdout(io.StringIO()):
            predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                                        perform_everything_on_device=False, device=torch.device("cpu"),
                                        allow_tqdm=False)
        predictor.initialize_from_trained_model_folder(str(model), use_folds=(0,))
        data = image.data.transpose(2, 1, 0)[None].astype(np.float32)  # stored RAS = SCT LPI already
        start = time.perf_counter()
        predictor.predict_single_npy_array(data, {"spacing": list(image.zooms[::-1])}, None, None, False)
    else:
        session = InferenceSession(resolve_model(str(model)), device="cpu", threads=2)
        start = time.perf_counter()
        session.predict(image)
    seconds = time.perf_counter() - start
    return {"engine": engine, "seconds": round(seconds, 1),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pam50", type=Path, default=HERE.parent.parent / "shared/data/pam50")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--engine", choices=("stock", "session"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine:
        print(json.dumps(run_engine(args.engine, args.work)))
        return
    prepare(args.pam50, args.work)
    plans = json.loads((HERE / "reference_plans.json").read_text())["configurations"]["3d_fullres"]
    print(f"reference network: patch {plans['patch_size']}, features "
          f"{plans['architecture']['arch_kwargs']['features_per_stage']}")
    for engine in ("stock", "session"):
        out = subprocess.run([sys.executable, __file__, "--work", str(args.work), "--engine", engine],
                             check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        print(out)


if __name__ == "__main__":
    main()
