"""`sct_rootlets_metrics`: per-level Dice, slice-wise F1, HD95 and midpoint errors of a prediction."""

import argparse
import sys

from sct_rootlets.cli.common import add_common_arguments, run_command


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sct_rootlets_metrics",
        description="Compare a rootlets prediction with ground truth, per level and for all rootlets together: "
                    "3D Dice, mean slice Dice, slice-wise detection F1 with SP/FP/FN/TN counts over every slice "
                    "of the union range, HD95 (mm) and level-midpoint error (mm).",
        epilog="Example:\n  sct_rootlets_metrics -gt sub-01_label-rootlets_dseg.nii.gz "
               "-pred sub-01_T2w_rootlets.nii.gz -o sub-01_metrics.csv",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-gt", required=True, metavar="TRUTH", help="Ground-truth rootlets label map.")
    parser.add_argument("-pred", required=True, metavar="PREDICTION", help="Predicted rootlets label map.")
    parser.add_argument("-o", metavar="CSV", help="Write the table to this CSV (it is always printed).")
    add_common_arguments(parser)
    return parser


def run(args: argparse.Namespace, argv) -> None:
    from sct_rootlets.io.atomic import atomic_paths
    from sct_rootlets.io.image import check_same_grid, load_label_image
    from sct_rootlets.qc.metrics import evaluate

    truth = load_label_image(args.gt, "ground truth")
    prediction = load_label_image(args.pred, "prediction")
    check_same_grid(truth, prediction)
    table = evaluate(truth.data.astype(int), prediction.data.astype(int), truth.nifti.affine, truth.zooms)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep=""))
    if args.o:
        with atomic_paths([args.o], overwrite=args.overwrite) as (tmp,):
            table.to_csv(tmp, index=False, float_format="%.4f", na_rep="")


def main(argv=None) -> int:
    return run_command(get_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
