"""`sct_rootlets_evaluate`: per-image, per-level metrics of predictions over a manifest split, with plots."""

import argparse
import sys

from sct_rootlets.cli.common import add_common_arguments, run_command


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sct_rootlets_evaluate",
        description="Evaluate predictions against the manifest's ground truth: metrics.csv (per image and level), "
                    "summary.csv (mean, std, count per level) and per_level.png.",
        epilog="Example:\n  sct_rootlets_evaluate -path-data DS -manifest D1a.tsv -pred OUT/derivatives -o eval",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-path-data", dest="path_data", required=True, metavar="BIDS")
    parser.add_argument("-manifest", required=True, metavar="TSV")
    parser.add_argument("-pred", required=True, metavar="FOLDER",
                        help="Folder searched for <stem>_rootlets.nii.gz or <stem>_label-rootlets*_dseg.nii.gz.")
    parser.add_argument("-split", default="test", choices=("train", "test"))
    parser.add_argument("-o", required=True, metavar="FOLDER")
    add_common_arguments(parser)
    return parser


def run(args: argparse.Namespace, argv) -> None:
    from sct_rootlets.training.evaluate import write_evaluation

    for path in write_evaluation(args.path_data, args.manifest, args.pred, args.o, split=args.split).values():
        print(f"Done: {path}")


def main(argv=None) -> int:
    return run_command(get_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
