"""`sct_rootlets_cord`: argument parsing only; the work is done by `sct_rootlets.segment.segment_cord`."""

import argparse
import shlex
import sys

from sct_rootlets.cli.common import add_common_arguments, add_qc_arguments, run_command
from sct_rootlets.cli.segmentation_options import add_cord_model_argument
from sct_rootlets.options import ENGINES, CONTRAST_AGNOSTIC_CORD_MODEL

PROG = "sct_rootlets_cord"


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Segment the spinal cord with the cord model bundled with sct_rootlets (no SCT "
                    "needed), or with SCT's contrast-agnostic model: a binary mask on the input's grid, named "
                    "as SCT names cord masks.",
        epilog="Examples:\n"
               f"  {PROG} -i sub-01_T2w.nii.gz                # -> sub-01_T2w_seg.nii.gz (+ .json)\n"
               f"  {PROG} -i sub-01_T2w.nii.gz -o sub-01_T2w_label-SC_seg.nii.gz -qc qc\n"
               f"  {PROG} -i sub-01_T1w.nii.gz -cord-model {CONTRAST_AGNOSTIC_CORD_MODEL}   # other contrasts",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-i", nargs="+", required=True, metavar="IMAGE", dest="inputs",
                        help="Input image(s) (.nii or .nii.gz), any contrast. Several images share one model "
                             "load.")
    parser.add_argument("-o", metavar="OUTPUT",
                        help="Output file for a single input (default: <input stem>_seg.nii.gz beside it).")
    options = parser.add_argument_group("segmentation options")
    add_cord_model_argument(options, "-model")
    options.add_argument("-device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N.")
    options.add_argument("-threads", type=int, metavar="N", help="CPU threads. Default: all CPUs available.")
    options.add_argument("-engine", choices=ENGINES, default="auto",
                         help="Runs the network (see sct_deepseg_rootlets -h). Default: auto.")
    add_qc_arguments(parser)
    add_common_arguments(parser)
    return parser


def run(args: argparse.Namespace, argv) -> None:
    from sct_rootlets.segment import QcOptions, segment_cord

    written = segment_cord(args.inputs, output=args.o, model=args.cord_model, device=args.device,
                           threads=args.threads, engine=args.engine, overwrite=args.overwrite,
                           command_line=shlex.join([PROG, *argv]),
                           qc=QcOptions(args.qc, args.qc_dataset, args.qc_subject))
    for path in written:
        print(f"Done: {path}")


def main(argv=None) -> int:
    return run_command(get_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
