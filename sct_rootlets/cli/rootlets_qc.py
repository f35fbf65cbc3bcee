"""`sct_rootlets_qc`: (re)build QC entries for files that already exist."""

import argparse
import shlex
import sys
from pathlib import Path

from sct_rootlets.cli.common import add_common_arguments, add_qc_arguments, run_command


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sct_rootlets_qc",
        description="Add rootlets QC entries (axial mosaic of every slice with rootlets, sagittal overview with "
                    "spinal-level bars) for existing files to a QC folder that SCT's viewer and ours open.",
        epilog="Example:\n  sct_rootlets_qc -i sub-01_T2w.nii.gz -s sub-01_T2w_rootlets.nii.gz "
               "-levels sub-01_T2w_rootlets_spinal_levels.csv -qc qc",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-i", required=True, metavar="IMAGE", help="Anatomical image (background).")
    parser.add_argument("-s", required=True, metavar="ROOTLETS", help="Rootlets label map on the image's grid.")
    parser.add_argument("-cord", metavar="CORD", help="Cord mask: axial tiles are centred on it.")
    parser.add_argument("-levels", metavar="CSV", help="Spinal-levels CSV (sct_rootlets_levels) for level bars.")
    add_qc_arguments(parser, required=True)
    add_common_arguments(parser)
    return parser


def run(args: argparse.Namespace, argv) -> None:
    from sct_rootlets.io.outputs import sidecar_path
    from sct_rootlets.qc.report import rootlets_qc
    from sct_rootlets.quality.record import read_quality

    entries = rootlets_qc(args.qc, args.i, args.s, cord_path=args.cord, levels_csv=args.levels,
                          command="sct_rootlets_qc", cmdline=shlex.join(["sct_rootlets_qc", *argv]),
                          dataset=args.qc_dataset, subject=args.qc_subject,
                          quality=read_quality(sidecar_path(Path(args.s))))  # the prediction's score, if it has one
    for entry in entries:
        print(f"QC entry: {entry}")


def main(argv=None) -> int:
    return run_command(get_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
