"""`sct_rootlets_synth`: a BIDS dataset of synthetic T2w-like volumes with exact rootlet labels."""

import argparse
import sys

from sct_rootlets.cli.common import add_common_arguments, run_command


def _triple(text: str, kind):
    parts = text.lower().split("x")
    try:
        values = [kind(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} must be N or AxBxC") from None
    if len(values) not in (1, 3) or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be N or AxBxC with positive values")
    return tuple(values * 3 if len(values) == 1 else values)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sct_rootlets_synth",
        description="Render synthetic T2w-like volumes from the PAM50 template's label maps with randomised "
                    "geometry and appearance, and rootlets drawn as thin strands, with exact labels (2=C2 ... "
                    "9=T1), cord mask, disc points and (with -pmj-label) a PMJ point, as a small BIDS dataset.",
        epilog="Example:\n  sct_rootlets_synth -o synth -n 20 -seed 1000",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", required=True, metavar="FOLDER", help="BIDS dataset to write.")
    parser.add_argument("-n", type=int, default=1, help="Number of volumes (subjects). Default: 1.")
    parser.add_argument("-seed", type=int, default=0, help="Seed of the first volume (then seed+1, ...).")
    parser.add_argument("-first-subject", dest="first_subject", type=int, default=1,
                        help="Number of the first subject (sub-NNN): adds volumes to an existing dataset, e.g. "
                             "generated in parallel chunks. Default: 1.")
    parser.add_argument("-pam50", metavar="FOLDER",
                        help="PAM50 template folder (PAM50_*.nii.gz), e.g. $SCT_DIR/data/PAM50/template. Default: "
                             "the label maps shipped with sct_rootlets (LGPL-3.0 data from SCT).")
    parser.add_argument("-pmj-label", dest="pmj_label", metavar="FILE",
                        help="PAM50_small_t2_pmj_manual.nii.gz, to place a PMJ point.")
    parser.add_argument("-voxel-size", dest="voxel_size", type=lambda t: _triple(t, float), default=(0.8,) * 3,
                        help="mm, N or AxBxC (left-right x antero-posterior x supero-inferior). Default: 0.8.")
    parser.add_argument("-shape", type=lambda t: _triple(t, int), default=(64, 320, 320),
                        help="Voxels, AxBxC in the same axis order. Default: 64x320x320.")
    parser.add_argument("-orientation", default="RPI", help="SCT orientation of the files. Default: RPI.")
    parser.add_argument("-random-contrast", dest="random_contrast", action="store_true",
                        help="Draw each tissue's intensity at random (any contrast) instead of T2w-like.")
    add_common_arguments(parser)
    return parser


def run(args: argparse.Namespace, argv) -> None:
    from pathlib import Path

    from sct_rootlets.errors import RootletsError
    from sct_rootlets.io.image import sct_orientation_to_axcodes
    from sct_rootlets.synthetic.render import SynthOptions, generate_dataset, load_template, subject_name

    try:
        sct_orientation_to_axcodes(args.orientation)
    except ValueError as exc:
        raise RootletsError(f"{exc}.") from None
    if args.n < 1 or args.first_subject < 1:
        raise RootletsError("-n and -first-subject must be at least 1.")
    subjects = [subject_name(args.first_subject + index) for index in range(args.n)]
    existing = [s for s in subjects if (Path(args.o) / s).exists()]
    if existing and not args.overwrite:
        raise RootletsError(f"{args.o} already holds {existing[0]} (and {len(existing) - 1} more of the subjects to "
                            f"write); use another -first-subject, or -overwrite to replace them.")
    try:
        template = load_template(args.pam50, Path(args.pmj_label) if args.pmj_label else None)
    except FileNotFoundError as exc:
        raise RootletsError(str(exc)) from None
    options = SynthOptions(shape=args.shape, voxel_size=args.voxel_size, orientation=args.orientation.upper(),
                           random_contrast=args.random_contrast)
    for path in generate_dataset(template, Path(args.o), count=args.n, seed=args.seed, options=options,
                                 first_subject=args.first_subject, progress=args.verbose >= 1):
        print(f"Done: {path}")


def main(argv=None) -> int:
    return run_command(get_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
