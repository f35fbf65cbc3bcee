"""`sct_rootlets_levels`: rootlets + cord mask (+ PMJ, + discs) -> spinal levels, CSV tables."""

import argparse
import sys

from sct_rootlets.cli.common import add_common_arguments, add_qc_arguments, positive_float, run_command
from sct_rootlets.cli.segmentation_options import add_cord_model_argument
from sct_rootlets.options import LEVEL_METHODS


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sct_rootlets_levels",
        description="Spinal levels of the cord from level-labelled rootlets: a cord map labelled with spinal "
                    "levels and a CSV of each level's extent and distances (mm along the cord centerline) from "
                    "the PMJ; with disc labels, vertebral levels and spinal-vs-vertebral midpoint differences.",
        epilog="Example:\n  sct_rootlets_levels -i sub-01_T2w_rootlets.nii.gz -s sub-01_T2w_seg.nii.gz "
               "-pmj sub-01_T2w_pmj.nii.gz -discs sub-01_T2w_labels-disc.nii.gz",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-i", required=True, metavar="ROOTLETS", help="Rootlets label map (2=C2 ... 9=T1).")
    parser.add_argument("-s", metavar="CORD",
                        help="Spinal cord mask on the same grid. Default: computed from -img by the cord model "
                             "(-cord-model; sct_rootlets_cord).")
    parser.add_argument("-pmj", metavar="PMJ", help="PMJ label (one point) for distances from the PMJ.")
    parser.add_argument("-discs", metavar="DISCS", help="Disc labels, SCT convention (3 = C2/C3, 4 = C3/C4 ...).")
    parser.add_argument("-method", choices=LEVEL_METHODS, default="extent",
                        help="extent: published definition (gaps and overlaps possible); gapfree: each level "
                             "runs from the caudal end of the level above to its own. Default: extent.")
    parser.add_argument("-dilate-mm", type=positive_float, default=3.0, dest="dilate_mm",
                        help="Cord dilation (mm) before intersecting with the rootlets. Default: 3.")
    parser.add_argument("-ofolder", metavar="FOLDER", help="Output folder (default: the rootlets' folder).")
    parser.add_argument("-img", metavar="IMAGE",
                        help="The anatomical image: QC background (needed with -qc), and the image the cord is "
                             "segmented on when -s is not given.")
    add_cord_model_argument(parser)
    add_qc_arguments(parser)
    add_common_arguments(parser)
    return parser


def run(args: argparse.Namespace, argv) -> None:
    import shlex

    from sct_rootlets.errors import RootletsError
    from sct_rootlets.anatomy.spinal_levels import write_spinal_levels

    if args.qc and not args.img:
        raise RootletsError("A QC report (-qc) needs the anatomical image as background (-img).")
    if not args.s and not args.img:
        raise RootletsError("Spinal levels need the cord: give its mask (-s) or the T2w image to find it in (-img).")
    cord_mask = None
    if not args.s:
        from sct_rootlets.anatomy.cord import CordSegmenter
        from sct_rootlets.io.image import load_input_image

        cord_mask, _ = CordSegmenter(model=args.cord_model).segment_checked(load_input_image(args.img))
    paths = write_spinal_levels(args.i, args.s, cord_mask=cord_mask, pmj_path=args.pmj, discs_path=args.discs,
                                method=args.method, dilate_mm=args.dilate_mm, ofolder=args.ofolder,
                                overwrite=args.overwrite)
    for path in paths.values():
        print(f"Done: {path}")
    if args.qc:
        from sct_rootlets.qc.report import rootlets_qc

        rootlets_qc(args.qc, args.img, args.i, cord_path=args.s, cord_mask=cord_mask, levels_csv=paths["spinal"],
                    command="sct_rootlets_levels", cmdline=shlex.join(["sct_rootlets_levels", *argv]),
                    dataset=args.qc_dataset, subject=args.qc_subject)


def main(argv=None) -> int:
    return run_command(get_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
