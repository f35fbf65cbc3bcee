"""`sct_deepseg_rootlets`: argument parsing only; the work is done by sct_rootlets' Python API."""

import argparse
import shlex
import sys

from sct_rootlets.cli.common import (add_common_arguments, add_dilation_arguments, add_qc_arguments,
                                     dilation_options, level_range, positive_float, run_command)
from sct_rootlets.options import LEVEL_METHODS

PROG = "sct_deepseg_rootlets"


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


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Segment spinal nerve rootlets on T2w MRI with an nnU-Net model; each rootlet is labelled "
                    "with its spinal level (2=C2 ... 9=T1 for the published models).",
        epilog="Examples:\n"
               f"  {PROG} -install\n"
               f"  {PROG} -i sub-01_T2w.nii.gz\n"
               f"  {PROG} -i a.nii.gz b.nii.gz -model /path/to/model_folder -device cpu\n"
               f"  {PROG} -list-models",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_argument_group("what to do (one of)").add_mutually_exclusive_group(required=True)
    actions.add_argument("-i", nargs="+", metavar="IMAGE", dest="inputs",
                         help="Input T2w image(s) (.nii or .nii.gz). Several images share one model load.")
    actions.add_argument("-install", nargs="?", const="", metavar="NAME",
                         help="Download, verify and install a registry model (default: the default model).")
    actions.add_argument("-install-from", metavar="ZIP_OR_URL", dest="install_from",
                         help="Install a model archive from a local zip file or an http(s) URL.")
    actions.add_argument("-list-models", action="store_true", dest="list_models",
                         help="List the known models and whether they are installed.")
    options = parser.add_argument_group("segmentation options")
    options.add_argument("-o", metavar="OUTPUT",
                         help="Output file for a single input (default: <input stem>_rootlets.nii.gz beside it).")
    options.add_argument("-model", metavar="NAME_OR_FOLDER",
                         help="Installed model name, or an nnU-Net model folder (e.g. one SCT installed). "
                              "Default: the installed default model.")
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
    post = parser.add_argument_group("per-level post-processing (in this order)")
    post.add_argument("-keep-levels", type=level_range, metavar="LOW:HIGH", dest="keep_levels",
                      help="Keep only label values LOW..HIGH, e.g. 2:9 for C2..T1.")
    post.add_argument("-remove-below-disc", type=int, metavar="VALUE", dest="remove_below_disc",
                      help="Remove rootlets caudal to this disc label (SCT: 3 = C2/C3); needs -discs.")
    post.add_argument("-max-distance-mm", type=positive_float, metavar="MM", dest="max_distance_mm",
                      help="Remove rootlets farther than MM from the cord mask; needs -s.")
    post.add_argument("-min-size-mm3", type=positive_float, metavar="MM3", dest="min_size_mm3",
                      help="Remove connected pieces of each level smaller than MM3 cubic millimetres.")
    add_dilation_arguments(post)
    levels = parser.add_argument_group("spinal levels (one input; see sct_rootlets_levels)")
    levels.add_argument("-s", metavar="CORD", help="Cord mask on the input's grid: also write spinal levels.")
    levels.add_argument("-pmj", metavar="PMJ", help="PMJ label: distances from the pontomedullary junction.")
    levels.add_argument("-discs", metavar="DISCS", help="Disc labels (SCT: 3 = C2/C3 ...): vertebral levels.")
    levels.add_argument("-levels-method", choices=LEVEL_METHODS, default="extent", dest="levels_method",
                        help="extent (published) or gapfree (levels tile the cord). Default: extent.")
    add_qc_arguments(parser)
    add_common_arguments(parser)
    return parser


def _list_models() -> None:
    from sct_rootlets import install, registry

    installed = set(install.installed_names())
    cards = registry.all_cards()
    for card in cards.values():
        flags = ", ".join(f for f in ("default" if card.default else "",
                                      "installed" if card.name in installed else "") if f)
        print(f"{card.name}{f' [{flags}]' if flags else ''}\n    {card.description}\n"
              f"    contrasts: {', '.join(card.contrasts)}; labels: "
              f"{', '.join(f'{v}={k}' for k, v in card.labels.items())}; license: {card.license}")
    for name in sorted(installed - set(cards)):
        print(f"{name} [installed]\n    installed from an archive outside the registry")


def run(args: argparse.Namespace, argv) -> None:
    from sct_rootlets import install

    progress = args.verbose >= 1
    if args.list_models:
        _list_models()
    elif args.install is not None:
        folder = install.install_model(args.install or None, force=args.overwrite, progress=progress)
        print(f"Model installed in {folder}")
    elif args.install_from:
        folder = install.install_from(args.install_from, force=args.overwrite, progress=progress)
        print(f"Model installed in {folder}")
    else:
        from sct_rootlets.segment import segment_rootlets

        from sct_rootlets.postprocess import PostProcessing
        from sct_rootlets.segment import Anatomy, QcOptions

        postprocessing = PostProcessing(level_range=args.keep_levels, below_disc=args.remove_below_disc,
                                        max_distance_mm=args.max_distance_mm, min_volume_mm3=args.min_size_mm3,
                                        **dilation_options(args))
        anatomy = Anatomy(cord=args.s, pmj=args.pmj, discs=args.discs, levels_method=args.levels_method)
        written = segment_rootlets(args.inputs, output=args.o, model=args.model, folds=args.folds,
                                   device=args.device, tta=args.tta, step_size=args.step_size,
                                   threads=args.threads, overwrite=args.overwrite, progress=progress,
                                   command_line=shlex.join([PROG, *argv]), postprocessing=postprocessing,
                                   anatomy=anatomy, qc=QcOptions(args.qc, args.qc_dataset, args.qc_subject))
        for path in written:
            print(f"Done: {path}")


def main(argv=None) -> int:
    return run_command(get_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
