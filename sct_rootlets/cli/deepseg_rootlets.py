"""`sct_deepseg_rootlets`: argument parsing only; the work is done by sct_rootlets' Python API."""

import argparse
import logging
import shlex
import sys

from sct_rootlets import __version__
from sct_rootlets.errors import RootletsError

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
    misc = parser.add_argument_group("misc")
    misc.add_argument("-overwrite", action="store_true",
                      help="Replace existing outputs (inputs are never overwritten); with -install, reinstall.")
    misc.add_argument("-v", type=int, choices=(0, 1, 2), default=1, dest="verbose",
                      help="Verbosity: 0 errors only, 1 progress (default), 2 debug.")
    misc.add_argument("-version", action="version", version=f"%(prog)s {__version__}")
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

        written = segment_rootlets(args.inputs, output=args.o, model=args.model, folds=args.folds,
                                   device=args.device, tta=args.tta, step_size=args.step_size,
                                   threads=args.threads, overwrite=args.overwrite, progress=progress,
                                   command_line=shlex.join([PROG, *argv]))
        for path in written:
            print(f"Done: {path}")


def _configure_logging(verbose: int) -> None:
    """Our messages go to stderr at the chosen level; other libraries' loggers are left alone."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("sct_rootlets")
    logger.handlers[:] = [handler]
    logger.setLevel({0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}[verbose])


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = get_parser().parse_args(argv)
    _configure_logging(args.verbose)
    try:
        run(args, argv)
    except RootletsError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
