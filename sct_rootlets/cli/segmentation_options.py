"""Options shared by the commands that segment (`sct_deepseg_rootlets`, `sct_rootlets_batch`)."""

import argparse

from sct_rootlets.cli.common import add_dilation_arguments, dilation_options, level_range, positive_float
from sct_rootlets.options import (BUNDLED_CORD_MODEL, CONTRAST_AGNOSTIC_CORD_MODEL, DEFAULT_CANAL_MM, DEFAULT_REGION,
                                  DEFAULT_ROI_MARGIN_MM, ENGINES, LEVEL_METHODS, REGION_MODES)

#: What -cord-model says, for every command that finds the cord.
CORD_MODEL_HELP = (f"The model that finds the cord where no cord mask is given: {BUNDLED_CORD_MODEL} (the small "
                   f"any-contrast model shipped with sct_rootlets, no download), {CONTRAST_AGNOSTIC_CORD_MODEL} (SCT's "
                   f"contrast-agnostic model, any contrast: used from SCT's folder when SCT has it, else install it "
                   f"with sct_deepseg_rootlets -install {CONTRAST_AGNOSTIC_CORD_MODEL}), another installed cord model, "
                   f"or an nnU-Net model folder. Default: {BUNDLED_CORD_MODEL}.")


def add_cord_model_argument(group, *aliases: str) -> None:
    """-cord-model (and `aliases`, e.g. -model where the cord model is the command's only model)."""
    group.add_argument(*aliases, "-cord-model", metavar="NAME_OR_FOLDER", dest="cord_model",
                       default=BUNDLED_CORD_MODEL, help=CORD_MODEL_HELP)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def _step_size(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not in (0, 1]")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a non-negative number")
    return value


def add_segmentation_arguments(parser: argparse.ArgumentParser) -> None:
    """Model, device and sliding-window options, then per-level post-processing."""
    options = parser.add_argument_group("segmentation options")
    options.add_argument("-model", metavar="NAME_OR_FOLDER",
                         help="Installed model name, or an nnU-Net model folder (e.g. one SCT installed). "
                              "Default: the default model, downloaded and installed on first use; if that fails, "
                              "or with SCT_ROOTLETS_OFFLINE=1 (no download attempt), the bundled starter model, "
                              "a demo model trained on generated rootlets only (see -list-models).")
    add_cord_model_argument(options)
    options.add_argument("-folds", nargs="+", metavar="FOLD",
                         help="Folds to ensemble (e.g. 0 1 or all). Default: every numbered fold present.")
    options.add_argument("-device", default="auto",
                         help="auto (CUDA when available), cpu, cuda or cuda:N. Default: auto.")
    options.add_argument("-tta", action="store_true",
                         help="Test-time augmentation by mirroring (about 8 times slower).")
    options.add_argument("-step-size", type=_step_size, default=0.5, dest="step_size",
                         help="Sliding-window step as a fraction of the patch size. Default: 0.5.")
    options.add_argument("-threads", type=_positive_int, metavar="N",
                         help="CPU threads for the network. Default: all CPUs available to this process.")
    options.add_argument("-engine", choices=ENGINES, default="auto",
                         help="Runs the network: torch (nnU-Net's numerics), openvino (CPU only, about 1.8 times "
                              "faster, labels equal up to float rounding), openvino-bf16 (bfloat16 on CPUs that do "
                              "it natively, about 1.8 times faster again), or auto: openvino-bf16 (else openvino) "
                              "for -region fast on a CPU, torch otherwise. The converted network is cached beside "
                              "the weights. Default: auto.")
    options.add_argument("-region", choices=REGION_MODES, default=DEFAULT_REGION,
                         help="How the network covers the image around the cord (the mask given with -s, else "
                              "one the cord model computes, -cord-model): fast runs it only in the cord's bounding box "
                              "widened by -roi-margin-mm, in as few tiles as possible (several times faster); exact "
                              "runs nnU-Net's own tiles that overlap that box, so labels in the box equal the "
                              "whole-image ones; whole is nnU-Net's stock prediction of the whole image. Default: "
                              f"{DEFAULT_REGION}.")
    options.add_argument("-roi-margin-mm", type=_non_negative_float, metavar="MM", dest="roi_margin_mm",
                         default=DEFAULT_ROI_MARGIN_MM,
                         help="Margin around the cord's bounding box for -region fast/exact (rootlets lie within "
                              f"about 15 mm of the cord). Default: {DEFAULT_ROI_MARGIN_MM:g}.")
    post = parser.add_argument_group("per-level post-processing (in this order)")
    post.add_argument("-keep-levels", type=level_range, metavar="LOW:HIGH", dest="keep_levels",
                      help="Keep only label values LOW..HIGH, e.g. 2:9 for C2..T1.")
    post.add_argument("-remove-below-disc", type=int, metavar="VALUE", dest="remove_below_disc",
                      help="Remove rootlets caudal to this disc label (SCT: 3 = C2/C3); needs -discs.")
    post.add_argument("-max-distance-mm", type=positive_float, metavar="MM", dest="max_distance_mm",
                      help="Remove rootlets farther than MM from the cord mask (-s, else computed).")
    post.add_argument("-canal-mm", type=_non_negative_float, metavar="MM", dest="canal_mm", default=DEFAULT_CANAL_MM,
                      help="Whenever the run has a cord mask (-s or computed), remove labels farther than MM from it, "
                           "as rootlets run inside the spinal canal; -max-distance-mm replaces it, 0 keeps every "
                           f"label. Default: {DEFAULT_CANAL_MM:g}.")
    post.add_argument("-min-size-mm3", type=positive_float, metavar="MM3", dest="min_size_mm3",
                      help="Remove connected pieces of each level smaller than MM3 cubic millimetres.")
    post.add_argument("-order-levels", type=int, choices=(0, 1), default=1, dest="order_levels",
                      help="1: relabel the pieces whose level is out of head-to-foot order (C2 highest ... T1 "
                           "lowest), changing as few voxels as possible; 0: keep the network's levels. Default: 1.")
    add_dilation_arguments(post)


def add_levels_method_argument(group) -> None:
    group.add_argument("-levels-method", choices=LEVEL_METHODS, default="extent", dest="levels_method",
                       help="extent (published) or gapfree (levels tile the cord). Default: extent.")


def postprocessing_from_args(args):
    from sct_rootlets.anatomy.postprocess import PostProcessing

    return PostProcessing(level_range=args.keep_levels, below_disc=args.remove_below_disc,
                          max_distance_mm=args.max_distance_mm, canal_mm=args.canal_mm,
                          min_volume_mm3=args.min_size_mm3,
                          order_levels=bool(args.order_levels), **dilation_options(args))
