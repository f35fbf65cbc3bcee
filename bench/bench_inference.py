"""CPU inference on the reference network (issue 8): nnU-Net's stock predictor with SCT's settings vs this
package's engines, and the fast path's agreement with the stock predictor for a trained model.

Speed (reference network, seeded random weights; each engine in its own process, 2 threads):

    .venv/bin/python bench/bench_inference.py speed --pam50 ../shared/data/pam50 --work /tmp/bench_inference

Steps: render two synthetic 0.8 mm 64x320x320 volumes (plus a 0.6 mm one and a small crop), let nnU-Net's default
planner plan them (the plans it chose are written to bench/reference_plans.json), build that network with seeded
random weights as a model folder, then time each engine: wall time from reading the image (and cord mask) to the
label map on the image grid, model already loaded; peak RSS of the process. The OpenVINO conversion is done once
before timing (it is cached beside the weights, as in use).

Agreement (a trained model, generated volumes with their cord masks):

    .venv/bin/python bench/bench_inference.py agreement --model MODEL_FOLDER --data BIDS --count 5

Whole processes as a user times them (`time sct_deepseg_rootlets -i IMG`: start-up, imports, model load, cord
step, writing), on the reference network and the 0.8 mm 64x320x320 volume, after `speed` prepared them:

    .venv/bin/python bench/bench_inference.py process --work /tmp/bench_inference [--runs 3]

"stock" is a process that does what SCT does with nnU-Net's predictor (load the model folder, read the image,
predict with step 0.5 and no mirroring, write the label map); "default" is `sct_deepseg_rootlets -i IMG -model
MODEL -o OUT` with no other option; its first run may fill caches (the OpenVINO export) that later runs use.

Each -region mode in process, with the tiles the network ran (whole and exact with PyTorch, fast as the default):

    .venv/bin/python bench/bench_inference.py regions --work /tmp/bench_inference IMAGE [IMAGE ...]
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ENGINES = {  # name: (engine, predict around the cord)
    "stock": None, "session": ("torch", False), "openvino": ("openvino", False), "roi": ("torch", True),
    "fast": ("openvino", True)}
ROI_MARGIN_MM = 20.0


def prepare(pam50: Path, work: Path) -> Path:
    import nibabel as nib
    import torch

    from sct_rootlets.synthetic.render import generate_dataset, load_template
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
    if not (work / "images").is_dir():
        _write_reference_images(pam50, work / "images")
    return work


def _write_reference_images(pam50: Path, folder: Path) -> None:
    """The reference sizes, stored as SCT's LPI (nibabel RAS), each with its cord mask."""
    import nibabel as nib
    import numpy as np

    from sct_rootlets.synthetic.render import SynthOptions, generate_case, load_template

    template = load_template(pam50)
    sizes = {"0.8mm_64x320x320": SynthOptions(),
             "0.6mm_85x427x427": SynthOptions(shape=(85, 427, 427), voxel_size=(0.6, 0.6, 0.6)),
             "crop_0.8mm_48x96x160": SynthOptions(shape=(48, 96, 160))}
    folder.mkdir(parents=True)
    for name, options in sizes.items():
        case = generate_case(template, 9000, options)
        scale = 1000.0 / float(np.percentile(case.image, 99.9))
        nib.save(nib.Nifti1Image(np.clip(case.image * scale, 0, 32767).astype(np.int16), case.affine),
                 folder / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(case.cord, case.affine), folder / f"{name}_cord.nii.gz")


def run_engine(engine: str, model: Path, image_path: Path) -> dict:
    """Time one prediction in this process (called in a fresh process per engine)."""
    import contextlib
    import io

    import numpy as np
    import torch

    from sct_rootlets.io.image import load_input_image, load_label_image
    from sct_rootlets.inference.session import InferenceSession
    from sct_rootlets.store.resolve import resolve_model

    torch.set_num_threads(2)
    cord_path = image_path.with_name(image_path.name.replace(".nii.gz", "_cord.nii.gz"))
    if engine == "stock":
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        with contextlib.redirect_stdout(io.StringIO()):
            predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                                        perform_everything_on_device=False, device=torch.device("cpu"),
                                        allow_tqdm=False)
        predictor.initialize_from_trained_model_folder(str(model), use_folds=(0,))
        start = time.perf_counter()
        image = load_input_image(image_path)
        data = image.data.transpose(2, 1, 0)[None].astype(np.float32)  # stored RAS = SCT LPI already
        predictor.predict_single_npy_array(data, {"spacing": list(image.zooms[::-1])}, None, None, False)
    else:
        name, around_cord = ENGINES[engine]
        session = InferenceSession(resolve_model(str(model)), device="cpu", threads=2, engine=name,
                                   region="fast" if around_cord else "whole", roi_margin_mm=ROI_MARGIN_MM)
        start = time.perf_counter()
        image = load_input_image(image_path)
        cord = load_label_image(cord_path, "cord mask").data if around_cord else None
        session.predict(image, cord)
    seconds = time.perf_counter() - start
    return {"engine": engine, "image": image_path.name, "seconds": round(seconds, 1),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2, 2)}


def _in_process(*args) -> dict:
    out = subprocess.run([sys.executable, __file__, *map(str, args)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def speed(args) -> None:
    from sct_rootlets.inference.session import InferenceSession
    from sct_rootlets.store.resolve import resolve_model

    prepare(args.pam50, args.work)
    plans = json.loads((HERE / "reference_plans.json").read_text())["configurations"]["3d_fullres"]
    print(f"reference network: patch {plans['patch_size']}, features "
          f"{plans['architecture']['arch_kwargs']['features_per_stage']}")
    model = args.work / "model" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    start = time.perf_counter()
    InferenceSession(resolve_model(str(model)), device="cpu", threads=2, engine="openvino")
    print(json.dumps({"openvino_conversion_s": round(time.perf_counter() - start, 1)}))
    for size in args.sizes:
        for engine in (ENGINES if size == "0.8mm_64x320x320" else ("stock", "fast")):
            print(json.dumps(_in_process("_time", engine, model, args.work / "images" / f"{size}.nii.gz")),
                  flush=True)


def agreement(args) -> None:
    """Stock predictor vs the fast path (OpenVINO + region around the cord) with a trained model."""
    import numpy as np

    from sct_rootlets.io.image import load_input_image, load_label_image
    from sct_rootlets.inference.session import InferenceSession, region_box
    from sct_rootlets.store.resolve import resolve_model

    model = resolve_model(str(args.model))
    stock = InferenceSession(model, device="cpu", threads=2)  # equal to nnUNetPredictor (tests/test_inference.py)
    fast = InferenceSession(model, device="cpu", threads=2, engine="openvino", region="fast",
                            roi_margin_mm=ROI_MARGIN_MM)
    totals = {"agree": 0, "stock": 0, "fast": 0, "outside": 0}
    for image_path in sorted(Path(args.data).glob("sub-*/anat/*_T2w.nii.gz"))[:args.count]:
        labels = Path(args.data) / "derivatives/labels" / image_path.parent.relative_to(args.data)
        cord = load_label_image(labels / image_path.name.replace("_T2w.nii.gz", "_T2w_label-SC_seg.nii.gz"),
                                "cord mask").data
        image = load_input_image(image_path)
        reference, result = stock.predict(image), fast.predict(image, cord)
        computed = np.zeros(cord.shape, bool)
        computed[region_box(cord, image.zooms, ROI_MARGIN_MM)] = True
        row = {"agree": int(np.sum((reference == result) & (reference > 0))), "stock": int(np.sum(reference > 0)),
               "fast": int(np.sum(result > 0)), "outside": int(np.sum((reference > 0) & ~computed))}
        print(json.dumps({"image": image_path.name, **row,
                          "dice": round(2 * row["agree"] / max(row["stock"] + row["fast"], 1), 4)}), flush=True)
        totals = {key: totals[key] + row[key] for key in totals}
    print(json.dumps({"all": True, **totals,
                      "dice": round(2 * totals["agree"] / max(totals["stock"] + totals["fast"], 1), 4)}))


def stock_process(model: Path, image_path: Path, output: Path) -> None:
    """What SCT does for one image, in this fresh process: nnU-Net's predictor from the model folder, the image
    reoriented to LPI (nibabel RAS) and back, step 0.5, Gaussian weighting, no mirroring, the label map saved."""
    import contextlib
    import io

    import nibabel as nib
    import numpy as np
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    torch.set_num_threads(2)
    with contextlib.redirect_stdout(io.StringIO()):
        predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                                    perform_everything_on_device=False, device=torch.device("cpu"), allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(model), use_folds=None)
    image = nib.load(image_path)
    ras = nib.as_closest_canonical(image)
    data = np.asanyarray(ras.dataobj).astype(np.float32).transpose(2, 1, 0)[None]
    labels = predictor.predict_single_npy_array(data, {"spacing": list(ras.header.get_zooms()[:3][::-1])},
                                                None, None, False)
    back = nib.Nifti1Image(np.asarray(labels).transpose(2, 1, 0).astype(np.uint8), ras.affine)
    original = nib.orientations.io_orientation(image.affine)
    nib.save(back.as_reoriented(nib.orientations.ornt_transform(nib.orientations.io_orientation(ras.affine),
                                                                original)), output)


class _CountingNetwork:
    """The session's network, counting the tiles it runs (nnU-Net's predictor also moves it and sets eval)."""

    def __init__(self, network):
        self.network, self.tiles = network, 0

    def __call__(self, window):
        self.tiles += 1
        return self.network(window)

    def load_state_dict(self, *args, **kwargs):
        return self.network.load_state_dict(*args, **kwargs)

    def to(self, *args, **kwargs):
        self.network = self.network.to(*args, **kwargs)
        return self

    def eval(self):
        self.network.eval()
        return self


def regions(args) -> None:
    """In-process time of each -region mode (model loaded, the cord computed once beforehand by the bundled cord
    model), with the tiles the network ran; whole and exact with PyTorch (their numerics are nnU-Net's), fast with
    -engine auto as the default runs it."""
    from sct_rootlets.anatomy.cord import CordSegmenter
    from sct_rootlets.io.image import load_input_image
    from sct_rootlets.inference.session import InferenceSession
    from sct_rootlets.store.resolve import resolve_model

    model = resolve_model(str(args.work / "model" / "nnUNetTrainer__nnUNetPlans__3d_fullres"))
    for image_path in args.images:
        image = load_input_image(image_path)
        cord = CordSegmenter(device="cpu").segment(image)
        for region, engine in (("whole", "torch"), ("exact", "torch"), ("fast", "auto")):
            session = InferenceSession(model, device="cpu", threads=2, region=region, engine=engine)
            counted = _CountingNetwork(session.network)
            session.network = counted  # before nnU-Net's predictor (whole, exact) is made from it
            start = time.perf_counter()
            session.predict(image, cord)
            print(json.dumps({"image": Path(image_path).name, "region": region, "engine": session.engine,
                              "seconds": round(time.perf_counter() - start, 1), "tiles": counted.tiles}), flush=True)


def _timed_process(command: list) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    return round(time.perf_counter() - start, 1)


def process(args) -> None:
    """Whole-process wall times: stock vs the default command (runs alternate, so load drifts hit both)."""
    model = args.work / "model" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    image = args.work / "images" / "0.8mm_64x320x320.nii.gz"
    out = args.work / "process"
    out.mkdir(exist_ok=True)
    command = str(Path(sys.executable).with_name("sct_deepseg_rootlets"))
    for run in range(args.runs):
        stock = _timed_process([sys.executable, __file__, "_stock", str(model), str(image), str(out / "stock.nii.gz")])
        default = _timed_process([command, "-i", str(image), "-model", str(model), "-o", str(out / "default.nii.gz"),
                                  "-overwrite"])
        print(json.dumps({"run": run + 1, "stock_s": stock, "default_s": default,
                          "speed_up": round(stock / default, 1)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("speed")
    run.add_argument("--pam50", type=Path, default=HERE.parent.parent / "shared/data/pam50")
    run.add_argument("--work", type=Path, required=True)
    run.add_argument("--sizes", nargs="+", default=["0.8mm_64x320x320", "crop_0.8mm_48x96x160", "0.6mm_85x427x427"])
    check = commands.add_parser("agreement")
    check.add_argument("--model", type=Path, required=True)
    check.add_argument("--data", type=Path, required=True)
    check.add_argument("--count", type=int, default=5)
    modes = commands.add_parser("regions")
    modes.add_argument("--work", type=Path, required=True)
    modes.add_argument("images", nargs="+", type=Path)
    whole = commands.add_parser("process")
    whole.add_argument("--work", type=Path, required=True)
    whole.add_argument("--runs", type=int, default=3)
    timed = commands.add_parser("_time")
    for name in ("engine", "model", "image"):
        timed.add_argument(name)
    stock = commands.add_parser("_stock")
    for name in ("model", "image", "output"):
        stock.add_argument(name, type=Path)
    args = parser.parse_args()
    if args.command == "_time":
        print(json.dumps(run_engine(args.engine, Path(args.model), Path(args.image))))
    elif args.command == "_stock":
        stock_process(args.model, args.image, args.output)
    else:
        {"speed": speed, "agreement": agreement, "process": process, "regions": regions}[args.command](args)


if __name__ == "__main__":
    main()
