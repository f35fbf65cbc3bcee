"""`sct_rootlets_train`: nnU-Net v2 plan/preprocess, train, and export as an installable model."""

import argparse
import sys
from pathlib import Path

from sct_rootlets.cli.common import add_common_arguments, run_command

PROG = "sct_rootlets_train"


def _fold(text: str):
    return text if text == "all" else int(text)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Train rootlets models with nnU-Net v2 in a work folder (nnUNet_raw, "
                               "nnUNet_preprocessed, nnUNet_results) and package them for sct_deepseg_rootlets.",
        epilog="Examples (a GPU lab run: -device cuda and nnU-Net's full schedule, -epochs 1000 -iterations 250):\n"
               f"  {PROG} plan -work work -id 101\n"
               f"  {PROG} train -work work -id 101 -fold 0 -device cuda\n"
               f"  {PROG} export -work work -id 101 -name D1a -model-version v1 -o work/export",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="step", required=True)
    plan = commands.add_parser("plan", help="Fingerprint, plans and 3d_fullres preprocessing.")
    train = commands.add_parser("train", help="Train one fold with nnUNetTrainer.")
    export = commands.add_parser("export", help="Zip the trained folds in the published layout + model card.")
    for sub in (plan, train, export):
        sub.add_argument("-work", required=True, metavar="FOLDER", help="Work folder (holds nnUNet_raw ...).")
        sub.add_argument("-id", type=int, required=True, dest="dataset_id", help="nnU-Net dataset number.")
    plan.add_argument("-processes", type=int, default=1)
    plan.add_argument("-patch-size", dest="patch_size", type=int, nargs=3, metavar=("A", "B", "C"),
                      help="Replace nnU-Net's planned network: patch in plans.json axis order (for a sagittal "
                           "RPI/LPI dataset: superior-inferior, antero-posterior, left-right). Default: nnU-Net's.")
    plan.add_argument("-base-features", dest="base_features", type=int, default=32,
                      help="With -patch-size: features of the first stage (doubling per stage). Default: 32.")
    plan.add_argument("-max-features", dest="max_features", type=int, default=320,
                      help="With -patch-size: feature cap. Default: 320.")
    plan.add_argument("-batch-size", dest="batch_size", type=int, default=2, help="With -patch-size. Default: 2.")
    plan.add_argument("-spacing", type=float, metavar="MM",
                      help="Resample every case to this isotropic voxel size instead of nnU-Net's median spacing.")
    train.add_argument("-fold", type=_fold, default=0, help="A fold number, or all (train on every case).")
    train.add_argument("-trainer", choices=("nnunet", "lean"), default="nnunet",
                       help="nnunet: nnU-Net's nnUNetTrainer (GPU-sized schedule, heavy augmentation). lean: a "
                            "CPU-sized loop for synthetic data (same network, loss and checkpoints; patches cut "
                            "directly, AdamW, see sct_rootlets.training.lean). Default: nnunet.")
    train.add_argument("-epochs", type=int, default=1000, help="Default: 1000 (nnU-Net's schedule).")
    train.add_argument("-iterations", type=int, default=250, help="Iterations per epoch. Default: 250.")
    train.add_argument("-val-iterations", type=int, default=50, dest="val_iterations")
    train.add_argument("-device", default="auto", help="auto, cpu, cuda or cuda:N. Default: auto.")
    train.add_argument("-oversample-foreground", dest="oversample_foreground", type=float,
                       help="Share of patches centred on a rootlet, 0..1. Default: nnU-Net's 0.33 (lean: 0.67).")
    train.add_argument("-mirror-axes", dest="mirror_axes", type=int, nargs="*",
                       help="Mirroring augmentation axes in plans order (e.g. 2 = left-right for a sagittal "
                            "dataset; none for no mirroring). Default: nnU-Net's, all axes (lean: 2).")
    train.add_argument("-learning-rate", dest="learning_rate", type=float, default=2e-3,
                       help="lean: peak AdamW learning rate (warm-up, then cosine decay). Default: 0.002.")
    train.add_argument("-bf16", action="store_true",
                       help="lean: bfloat16 autocast (about twice as fast on CPUs with AVX512-BF16 or AMX).")
    train.add_argument("-continue", dest="resume", action="store_true",
                       help="lean: continue from the fold's checkpoint_latest.pth.")
    train.add_argument("-pretrained", metavar="CHECKPOINT",
                       help="lean: start from this checkpoint's network weights (same plans' architecture).")
    train.add_argument("-data-workers", type=int, default=0, dest="data_workers",
                       help="Augmentation worker processes (0: in the training process). Default: 0.")
    export.add_argument("-name", required=True, help="Model name (registry key).")
    export.add_argument("-model-version", required=True, dest="model_version", help="e.g. v1 or r20261124.")
    export.add_argument("-o", required=True, metavar="FOLDER", help="Where to write <name>-<version>.zip + card.")
    export.add_argument("-folds", type=_fold, nargs="+",
                        help="Folds to include (numbers or all). Default: every trained fold.")
    export.add_argument("-checkpoint", choices=("final", "best"), default="final",
                        help="final, or best (best validation pseudo-Dice, e.g. when training was stopped early).")
    export.add_argument("-description", default="")
    export.add_argument("-url", action="append", default=[], help="Where the zip will be published (repeatable).")
    for sub in (plan, train, export):
        add_common_arguments(sub)
    return parser


def run(args: argparse.Namespace, argv) -> None:
    from sct_rootlets.training import train

    if args.step == "plan":
        network = None
        if args.patch_size:
            network = train.NetworkSize(tuple(args.patch_size), args.base_features, args.max_features,
                                        args.batch_size)
        folder = train.plan_and_preprocess(args.work, args.dataset_id, processes=args.processes, network=network,
                                           spacing_mm=args.spacing)
        print(f"Done: {folder}")
    elif args.step == "train" and args.trainer == "lean":
        from sct_rootlets.training.lean import LeanSchedule, train_lean

        defaults = LeanSchedule()
        schedule = LeanSchedule(
            epochs=args.epochs, iterations=args.iterations, val_patches=args.val_iterations,
            learning_rate=args.learning_rate, bfloat16=args.bf16,
            foreground_share=defaults.foreground_share if args.oversample_foreground is None
            else args.oversample_foreground,
            mirror_axes=defaults.mirror_axes if args.mirror_axes is None else tuple(args.mirror_axes))
        folder = train_lean(args.work, args.dataset_id, fold=args.fold, schedule=schedule, device=args.device,
                            resume=args.resume, pretrained=Path(args.pretrained) if args.pretrained else None)
        print(f"Done: {folder}")
    elif args.step == "train":
        folder = train.train(args.work, args.dataset_id, fold=args.fold, epochs=args.epochs,
                             iterations=args.iterations, val_iterations=args.val_iterations, device=args.device,
                             data_workers=args.data_workers, oversample_foreground=args.oversample_foreground,
                             mirror_axes=args.mirror_axes)
        print(f"Done: {folder}")
    else:
        archive, card = train.export_model(args.work, args.dataset_id, name=args.name, version=args.model_version,
                                           output=args.o, folds=args.folds, description=args.description,
                                           urls=args.url, checkpoint=args.checkpoint)
        print(f"Done: {archive}\nModel card: {card}\nInstall: sct_deepseg_rootlets -install-from {archive}")


def main(argv=None) -> int:
    return run_command(get_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
