"""`sct_rootlets_review`: review and correct rootlet predictions in the browser (or a desktop viewer)."""

import argparse
import sys

from sct_rootlets import __version__
from sct_rootlets.cli.common import add_suffix_argument, run_command
from sct_rootlets.review.ranking import DEFAULT_ORDER, ORDERS

PROG = "sct_rootlets_review"


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="A local web app to review rootlet predictions image by image (three planes and a 3D view in "
                    "SCT's level colours, pass/fail/artifact marks) and correct them (paint, erase, relabel a "
                    "connected piece, undo). Corrections are saved to OUT on the image's grid with a sidecar naming "
                    "the rater; the fails are written as a qc_fail.yml for manual_correction.py. It listens on "
                    "127.0.0.1 only: from a cluster, forward the port over SSH.",
        epilog="Examples:\n"
               f"  {PROG} -path-data DS -path-pred preds/derivatives -rater 'Jane Doe'\n"
               f"  {PROG} -path-data DS -path-pred preds/derivatives -include qc/qc_fail_subjects.txt -port 0\n"
               f"  {PROG} -path-data DS -path-pred preds/derivatives -suffix UNIT1 -rater 'Jane Doe'\n"
               f"  {PROG} -path-data DS -path-pred preds/derivatives -qc-fail qc_fail.yml -viewer itksnap "
               "-rater 'Jane Doe'\n"
               "  ssh -L 8765:127.0.0.1:8765 cluster   # then open the printed address on your machine",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    folders = parser.add_argument_group("folders")
    folders.add_argument("-path-data", dest="path_data", required=True, metavar="DS", help="BIDS dataset.")
    folders.add_argument("-path-pred", dest="path_pred", required=True, metavar="PRED",
                         help="Derivatives folder holding the predictions, as sct_rootlets_batch writes them "
                              "(PRED/labels/sub-XX/[ses-YY/]anat/<stem>_label-rootlets_dseg.nii.gz).")
    folders.add_argument("-path-out", dest="path_out", metavar="OUT",
                         help="Where corrections go (and are looked for first). Default: DS/derivatives/labels.")
    which = parser.add_argument_group("which images")
    add_suffix_argument(which)
    chosen = which.add_mutually_exclusive_group()
    chosen.add_argument("-include", metavar="REGEX|LIST",
                        help="Only sub-XX[/ses-YY] matching a regex, listed (spaces or commas), or listed in a file "
                             "such as our QC viewer's qc_fail_subjects.txt.")
    chosen.add_argument("-qc-fail", dest="qc_fail", metavar="YAML",
                        help="Only the images of a qc_fail.yml (SCT's QC viewer 'Save Fails': FILE_KIND_UNKNOWN, "
                             "FILES_SEG; or FILES_ROOTLETS).")
    which.add_argument("-order", choices=ORDERS, default=DEFAULT_ORDER,
                       help="worst: the lowest quality score first (the \"Quality\" record of each prediction's "
                            "sidecar), images without one after them in dataset order; file: the dataset's order. "
                            f"Default: {DEFAULT_ORDER}.")
    session = parser.add_argument_group("session")
    session.add_argument("-rater", default="", help="Your name, recorded in each corrected file's sidecar.")
    session.add_argument("-port", type=int, default=8765, help="Port on 127.0.0.1 (0: a free one). Default: 8765.")
    session.add_argument("-viewer", choices=("fsleyes", "itksnap"),
                         help="Open each image, one after the other, in this desktop viewer instead of serving the "
                              "web app (the command is printed); a changed file is checked and gets the rater's "
                              "sidecar entry.")
    misc = parser.add_argument_group("misc")
    misc.add_argument("-v", type=int, choices=(0, 1, 2), default=1, dest="verbose",
                      help="Verbosity: 0 errors only, 1 progress (default), 2 debug (every request).")
    misc.add_argument("-version", action="version", version=f"%(prog)s {__version__}")
    return parser


def run(args: argparse.Namespace, argv) -> None:
    from sct_rootlets.errors import RootletsError

    if not 0 <= args.port <= 65535:
        raise RootletsError(f"-port {args.port} is not a port number (0 to 65535).")
    if args.viewer:
        from sct_rootlets.review.desktop import correct_in_viewer
        from sct_rootlets.review.server import open_session

        session, _ = open_session(path_data=args.path_data, path_pred=args.path_pred, path_out=args.path_out,
                                  include=args.include, qc_fail=args.qc_fail, rater=args.rater,
                                  suffix=args.suffix, order=args.order)
        changed = correct_in_viewer(session.items, session.writer, viewer=args.viewer, rater=args.rater,
                                    echo=lambda line: print(line, flush=True))
        print(f"Done: {changed} of {len(session.items)} label map(s) corrected in {session.folders.out}")
        return
    from sct_rootlets.review.server import serve_review

    serve_review(path_data=args.path_data, path_pred=args.path_pred, path_out=args.path_out, include=args.include,
                 qc_fail=args.qc_fail, rater=args.rater, port=args.port,
                 on_ready=lambda url: print(url, flush=True), suffix=args.suffix, order=args.order)


def main(argv=None) -> int:
    return run_command(get_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
