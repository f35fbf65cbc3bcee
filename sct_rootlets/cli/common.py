"""What every command shares: -v, logging to stderr, and turning user errors into one line + exit code 1."""

import argparse
import logging
import sys

from sct_rootlets import __version__
from sct_rootlets.errors import RootletsError
from sct_rootlets.io.atomic import refusal_reason
from sct_rootlets.options import DILATION_SHAPES


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    misc = parser.add_argument_group("misc")
    misc.add_argument("-overwrite", action="store_true", help="Replace existing outputs (never the inputs).")
    misc.add_argument("-v", type=int, choices=(0, 1, 2), default=1, dest="verbose",
                      help="Verbosity: 0 errors only, 1 progress (default), 2 debug.")
    misc.add_argument("-version", action="version", version=f"%(prog)s {__version__}")


def _configure_logging(verbose: int) -> None:
    """Our messages go to stderr at the chosen level; other libraries' loggers are left alone."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("sct_rootlets")
    logger.handlers[:] = [handler]
    logger.setLevel({0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}[verbose])


def _image_suffix(text: str):
    from sct_rootlets.io.bids import ImageSuffix

    try:
        return ImageSuffix.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_suffix_argument(group) -> None:
    """-suffix: which images of a BIDS dataset (their contrast), checked as the arguments are parsed."""
    from sct_rootlets.io.bids import DEFAULT_SUFFIX

    group.add_argument("-suffix", type=_image_suffix, default=DEFAULT_SUFFIX, metavar="SUFFIX",
                       help="The images to take: their BIDS suffix, optionally after entities their names must hold "
                            "too, e.g. T2w, T1w, UNIT1, T2starw, MTS, acq-MTon_MTS, inv-1_MP2RAGE. "
                            f"Default: {DEFAULT_SUFFIX}.")


def add_qc_arguments(parser: argparse.ArgumentParser, required: bool = False) -> None:
    qc = parser.add_argument_group("quality control (SCT 7.x report format)")
    qc.add_argument("-qc", metavar="FOLDER", required=required,
                    help="Add QC entries (axial mosaic + sagittal overview) to this folder.")
    qc.add_argument("-qc-dataset", metavar="NAME", dest="qc_dataset",
                    help="Dataset name in the report (default: the input's 3rd parent folder).")
    qc.add_argument("-qc-subject", metavar="NAME", dest="qc_subject",
                    help="Subject name in the report (default: the input's 2nd parent folder).")


def run_command(parser: argparse.ArgumentParser, run, argv=None, prepare=None) -> int:
    """Parse, then call run(args, argv); a RootletsError becomes `<prog>: error: <message>` and exit code 1, and so
    does a full, read-only or forbidden disk that a writer did not turn into one (the OS's words and the path).

    `prepare(parser, argv)`, if given, may set parser defaults (e.g. from a config file) before parsing.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if prepare is not None:
            prepare(parser, argv)
    except RootletsError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 1
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    try:
        run(args, argv)
    except RootletsError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        reason = refusal_reason(exc)
        if reason is None:
            raise
        print(f"{parser.prog}: error: {reason.capitalize()}{f': {exc.filename}' if exc.filename else ''}.",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130
    return 0


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be positive")
    return value


def level_range(text: str) -> tuple:
    """'2:9' -> (2, 9)."""
    low, sep, high = text.partition(":")
    if not sep or not low.isdigit() or not high.isdigit() or int(low) > int(high):
        raise argparse.ArgumentTypeError(f"{text!r} is not a level range such as 2:9")
    return int(low), int(high)


def _dilation_size(text: str) -> tuple:
    from sct_rootlets.anatomy.postprocess import parse_dilation_size

    try:
        return parse_dilation_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_dilation_arguments(group) -> None:
    """sct_maths-style dilation options: -dilate SIZE -shape SHAPE -dim DIM."""
    group.add_argument("-dilate", type=_dilation_size, metavar="SIZE",
                       help="Greyscale dilation as sct_maths -dilate, in voxels (ball/disk: radius without the "
                            "centre; cube/square: edge length): N, AxBxC for ball/cube, AxB for disk/square "
                            "(the two axes other than -dim). A zero ball radius gives a box. Level values survive.")
    group.add_argument("-shape", choices=DILATION_SHAPES, default="ball",
                       help="Dilation footprint. Default: ball.")
    group.add_argument("-dim", type=int, choices=(0, 1, 2),
                       help="For disk/square only: the axis the 2D footprint is orthogonal to.")


def dilation_options(args) -> dict:
    """PostProcessing keyword arguments from the dilation options, checked together."""
    from sct_rootlets.anatomy.postprocess import dilation_footprint

    if args.dilate is None:
        return {}
    try:
        dilation_footprint(args.dilate, args.shape, args.dim)
    except ValueError as exc:
        raise RootletsError(f"Invalid dilation: {exc}.") from None
    return {"dilation": args.dilate, "dilation_shape": args.shape, "dilation_dim": args.dim}
