"""`sct_deepseg_rootlets`: argument parsing only; the work is done by sct_rootlets' Python API."""

import argparse
import shlex
import sys

from sct_rootlets.cli.common import add_common_arguments, add_qc_arguments, run_command
from sct_rootlets.cli.segmentation_options import (add_levels_method_argument, add_segmentation_arguments,
                                                   postprocessing_from_args)

PROG = "sct_deepseg_rootlets"


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
                         help="List the known models, their contrasts (with the -suffix of sct_rootlets_batch that "
                              "selects each), whether they are installed, and which one a run without -model uses.")
    parser.add_argument_group("output").add_argument(
        "-o", metavar="OUTPUT", help="Output file for a single input (default: <input stem>_rootlets.nii.gz beside it).")
    add_segmentation_arguments(parser)
    levels = parser.add_argument_group("spinal levels (one input; written when -s, -pmj or -discs is given; see "
                                       "sct_rootlets_levels)")
    levels.add_argument("-s", metavar="CORD",
                        help="Cord mask on the input's grid (default: computed by the cord model, -cord-model).")
    levels.add_argument("-pmj", metavar="PMJ", help="PMJ label: distances from the pontomedullary junction.")
    levels.add_argument("-discs", metavar="DISCS", help="Disc labels (SCT: 3 = C2/C3 ...): vertebral levels.")
    add_levels_method_argument(levels)
    add_qc_arguments(parser)
    add_common_arguments(parser)
    return parser


def _contrasts_text(contrasts) -> str:
    """'T2w, T1w-INV1 (-suffix inv-1_MP2RAGE)': each contrast, and the -suffix that selects it where that differs."""
    from sct_rootlets.io.bids import suffix_of_contrast

    return ", ".join(name if suffix_of_contrast(name) == name else f"{name} (-suffix {suffix_of_contrast(name)})"
                     for name in contrasts)


def _list_models() -> None:
    from sct_rootlets.store import install, registry
    from sct_rootlets.store.resolve import default_choice, sct_copy_of

    installed = set(install.installed_names())
    cards = registry.all_cards()
    choice = default_choice()
    starter = choice.starter.name if choice.starter else None
    for card in cards.values():
        sct_copy = sct_copy_of(card.name)
        flags = ", ".join(f for f in ("default" if card.name == choice.default.name else "",
                                      "offline default" if card.name == starter else "",
                                      f"cord model: -cord-model {card.name}" if card.task == "spinalcord" else "",
                                      "bundled" if card.bundled else "",
                                      "installed" if card.name in installed else "",
                                      f"installed by SCT at {sct_copy.folder}, used from there"
                                      if sct_copy else "") if f)
        print(f"{card.name}{f' [{flags}]' if flags else ''}\n    {card.description}\n"
              f"    contrasts: {_contrasts_text(card.contrasts)}; labels: "
              f"{', '.join(f'{v}={k}' for k, v in card.labels.items())}; license: {card.license}")
    for name in sorted(installed - set(cards)):
        print(f"{name} [installed]\n    installed from an archive outside the registry")
    print(f"\nWithout -model, {PROG} uses {choice.describe()}.")


def run(args: argparse.Namespace, argv) -> None:
    from sct_rootlets.store import install

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

        from sct_rootlets.segment import Anatomy, QcOptions

        postprocessing = postprocessing_from_args(args)
        anatomy = Anatomy(cord=args.s, pmj=args.pmj, discs=args.discs, levels_method=args.levels_method)
        written = segment_rootlets(args.inputs, output=args.o, model=args.model, folds=args.folds,
                                   device=args.device, tta=args.tta, step_size=args.step_size,
                                   threads=args.threads, engine=args.engine, region=args.region,
                                   roi_margin_mm=args.roi_margin_mm, cord_model=args.cord_model,
                                   overwrite=args.overwrite, progress=progress,
                                   command_line=shlex.join([PROG, *argv]), postprocessing=postprocessing,
                                   anatomy=anatomy, qc=QcOptions(args.qc, args.qc_dataset, args.qc_subject))
        for path in written:
            print(f"Done: {path}")


def main(argv=None) -> int:
    return run_command(get_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
