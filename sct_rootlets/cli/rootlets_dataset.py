"""`sct_rootlets_dataset`: dataset versions for training (manifest, build), auto labels (predict-to-bids) and the
next images to correct (select)."""

import argparse
import logging
import shlex
import sys
from pathlib import Path

from sct_rootlets.cli.common import add_common_arguments, add_suffix_argument, run_command

PROG = "sct_rootlets_dataset"
#: The first line of the lists `select` writes (not the review's own comment: the review's merging of its
#: qc_fail.yml treats a file under that comment as its own).
SELECT_COMMENT = ("written by sct_rootlets_dataset select: the images to correct next, worst quality score first, "
                  "under FILES_ROOTLETS (sct_rootlets_review -qc-fail, manual_correction.py -config)")
#: How many names a warning about left-out images shows.
NAMED_IN_WARNING = 5

logger = logging.getLogger("sct_rootlets.cli.rootlets_dataset")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Build nnU-Net datasets from BIDS rootlet labels, and predict labels to correct.",
        epilog="Examples:\n"
               f"  {PROG} manifest -path-data DS -o D1a.tsv -test-fraction 0.2 -seed 0\n"
               f"  {PROG} manifest -path-data DS -suffix UNIT1 -o D1u.tsv       # MP2RAGE's UNIT1 images\n"
               f"  {PROG} build -path-data DS -manifest D1a.tsv -o work/nnUNet_raw -id 101 -name D1a -labels level\n"
               f"  {PROG} augment -path-data DS -o DS_aug -label-suffix _label-SC_seg -n 12 -seed 1\n"
               f"  {PROG} implant -path-data real_bids -o DS_implant -n 8 -seed 3001\n"
               f"  {PROG} predict-to-bids -path-data DS -model work/export/D1a-v1.zip\n"
               f"  {PROG} select -path-data DS -path-pred preds -n 20 -o next.yml -diverse",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="step", required=True)

    manifest = commands.add_parser("manifest", help="Start a manifest from the labels found in a BIDS dataset.")
    manifest.add_argument("-path-data", dest="path_data", required=True, metavar="BIDS")
    add_suffix_argument(manifest)
    manifest.add_argument("-o", required=True, metavar="TSV", help="Manifest to write.")
    manifest.add_argument("-test-fraction", dest="test_fraction", type=float, default=0.2,
                          help="Fraction of subjects for testing (split by subject). Default: 0.2.")
    manifest.add_argument("-seed", type=int, default=0)
    manifest.add_argument("-rater", default="", help="Rater to record for labels whose sidecar names none (the "
                                                     "Author of its last 'Manual' GeneratedBy entry).")
    manifest.add_argument("-label-suffix", dest="label_suffix", default="_label-rootlets_dseg",
                          help="Label files to pair with the images, e.g. _label-SC_seg for cord masks. "
                               "Default: _label-rootlets_dseg.")
    manifest.add_argument("-keep-empty-labels", dest="keep_empty_labels", action="store_true",
                          help="Keep labels without a single labelled voxel (left out by default, with a warning: "
                               "every scan has rootlets, and manual_correction.py creates an empty mask when it "
                               "finds no label).")

    build = commands.add_parser("build", help="Manifest -> nnU-Net v2 raw dataset (all pairs checked first; the "
                                              "input channel is named by the images' contrasts).")
    build.add_argument("-path-data", dest="path_data", required=True, metavar="BIDS")
    build.add_argument("-manifest", required=True, metavar="TSV")
    build.add_argument("-o", required=True, metavar="NNUNET_RAW", help="nnU-Net raw folder (nnUNet_raw).")
    build.add_argument("-id", type=int, required=True, dest="dataset_id", help="nnU-Net dataset number.")
    build.add_argument("-name", required=True, help="Dataset name (e.g. D1a).")
    build.add_argument("-labels", choices=("level", "binary", "recode"), default="level",
                       help="level (2=C2 ... 9=T1), binary, or recode with -recode. Default: level.")
    build.add_argument("-recode", metavar="MAP", help="e.g. 2:1,3:1,9:0 (with -labels recode).")
    build.add_argument("-folds", type=int, default=5, help="Cross-validation folds (by subject). Default: 5.")
    build.add_argument("-seed", type=int, default=0)
    build.add_argument("-fold-subjects", dest="fold_subjects", metavar="A,B;C,D",
                       help="Validation subjects of each fold, folds separated by ';' (each fold trains on every "
                            "other subject), instead of -folds random folds.")
    build.add_argument("-allow-empty", action="store_true", dest="allow_empty",
                       help="Accept label maps without any rootlet.")

    augment = commands.add_parser("augment", help="Realistic variants of labelled scans (field of view, voxel size, "
                                                  "pose, contrast) as BIDS sessions, for training.")
    augment.add_argument("-path-data", dest="path_data", required=True, metavar="BIDS")
    add_suffix_argument(augment)
    augment.add_argument("-o", required=True, metavar="BIDS", help="Dataset to write the variants into.")
    augment.add_argument("-label-suffix", dest="label_suffix", default="_label-SC_seg",
                         help="Labels to carry along (derivatives/labels). Default: _label-SC_seg.")
    augment.add_argument("-n", type=int, default=10, help="Variants per image (plus the original). Default: 10.")
    augment.add_argument("-seed", type=int, default=0)
    augment.add_argument("-min-extent-mm", dest="min_extent_mm", type=float, default=50.0,
                         help="Smallest field of view along each axis, mm (thinner slabs are common in axial "
                              "acquisitions). Default: 50.")
    augment.add_argument("-intensity-remap", dest="intensity_remap", type=float, default=0.0, metavar="SHARE",
                         help="Share (0-1) of variants whose intensities go through a random curve (inverted or "
                              "non-monotonic), for models that must work in any contrast. Default: 0.")

    implant = commands.add_parser("implant", help="Real T2w scans with their own rootlets taken out of the CSF and "
                                                  "generated, labelled ones drawn in (needs cord masks and C2/T2 "
                                                  "vertebral centres), as BIDS sessions, for training. T2w only: the "
                                                  "CSF is found as brighter than the cord.")
    implant.add_argument("-path-data", dest="path_data", required=True, metavar="BIDS")
    implant.add_argument("-o", required=True, metavar="BIDS", help="Dataset to write the cases into.")
    implant.add_argument("-cord-suffix", dest="cord_suffix", default="_label-SC_seg",
                         help="Cord masks (derivatives/labels). Default: _label-SC_seg.")
    implant.add_argument("-landmarks-suffix", dest="landmarks_suffix", default="_desc-vertcentre_dlabel",
                         help="C2 (2) and T2 (9) vertebral body centres (derivatives/labels). "
                              "Default: _desc-vertcentre_dlabel.")
    implant.add_argument("-n", type=int, default=8, help="Cases per image. Default: 8.")
    implant.add_argument("-seed", type=int, default=0)

    predict = commands.add_parser("predict-to-bids", help="Predict unlabelled images as _desc-auto derivatives.")
    predict.add_argument("-path-data", dest="path_data", required=True, metavar="BIDS")
    add_suffix_argument(predict)
    predict.add_argument("-model", metavar="NAME_OR_FOLDER")
    predict.add_argument("-include", metavar="REGEX|LIST")
    predict.add_argument("-exclude", metavar="REGEX|LIST")
    predict.add_argument("-device", default="auto")
    predict.add_argument("-threads", type=int)

    select = commands.add_parser("select", help="The N images whose predictions have the lowest quality scores and "
                                                "no correction yet, as a qc_fail.yml (FILES_ROOTLETS) for "
                                                "sct_rootlets_review -qc-fail and manual_correction.py -config.")
    select.add_argument("-path-data", dest="path_data", required=True, metavar="DS", help="BIDS dataset.")
    select.add_argument("-path-pred", "-pred", dest="path_pred", required=True, metavar="PRED",
                        help="The predictions: sct_rootlets_batch's output folder, or a derivatives folder as "
                             "sct_rootlets_review -path-pred takes it. Their sidecars hold the quality scores.")
    add_suffix_argument(select)
    select.add_argument("-n", type=int, required=True, dest="count", metavar="N", help="How many images to choose.")
    select.add_argument("-o", required=True, metavar="YAML", help="List to write, e.g. next.yml.")
    select.add_argument("-diverse", action="store_true",
                        help="Spread the choice over subjects, and over sites where participants.tsv names them "
                             "(column site, institution_id, institution, center or centre): rounds over the "
                             "groups, worst first within each round.")
    for sub in (manifest, build, augment, implant, predict, select):
        add_common_arguments(sub)
    return parser


def run(args: argparse.Namespace, argv) -> None:
    from sct_rootlets.errors import RootletsError

    if args.step == "manifest":
        from sct_rootlets.training.manifest import manifest_from_bids, write_manifest

        table = manifest_from_bids(Path(args.path_data), suffix=args.suffix, label_suffix=args.label_suffix,
                                   test_fraction=args.test_fraction, seed=args.seed, rater=args.rater,
                                   keep_empty=args.keep_empty_labels)
        if Path(args.o).exists() and not args.overwrite:
            raise RootletsError(f"{args.o} already exists; use -overwrite to replace it.")
        write_manifest(table, args.o)
        print(f"Done: {args.o} ({len(table)} image/label pairs, {table.subject.nunique()} subjects)")
    elif args.step == "build":
        from sct_rootlets.training.nnunet_dataset import LabelScheme, build_dataset, parse_fold_subjects, parse_recode

        if (args.labels == "recode") != bool(args.recode):
            raise RootletsError("-labels recode and -recode MAP go together.")
        scheme = LabelScheme(args.labels, parse_recode(args.recode) if args.recode else None)
        folder = build_dataset(args.path_data, args.manifest, args.o, dataset_id=args.dataset_id, name=args.name,
                               scheme=scheme, folds=args.folds, seed=args.seed, allow_empty=args.allow_empty,
                               overwrite=args.overwrite,
                               fold_subjects=parse_fold_subjects(args.fold_subjects) if args.fold_subjects else None)
        print(f"Done: {folder}")
    elif args.step == "augment":
        from sct_rootlets.training.augment import AugmentOptions, augment_dataset

        if args.n < 1:
            raise RootletsError("-n must be at least 1.")
        if not 0 <= args.intensity_remap <= 1 or args.min_extent_mm <= 0:
            raise RootletsError("-intensity-remap must lie in 0-1 and -min-extent-mm be positive.")
        options = AugmentOptions(min_extent_mm=args.min_extent_mm, remap_share=args.intensity_remap)
        written = augment_dataset(Path(args.path_data), Path(args.o), suffix=args.suffix,
                                  label_suffix=args.label_suffix, count=args.n, seed=args.seed, options=options,
                                  overwrite=args.overwrite, progress=args.verbose >= 1)
        print(f"Done: {len(written)} images in {args.o}")
    elif args.step == "implant":
        from sct_rootlets.synthetic.implant import implant_dataset

        if args.n < 1:
            raise RootletsError("-n must be at least 1.")
        written = implant_dataset(Path(args.path_data), Path(args.o), count=args.n, seed=args.seed,
                                  cord_suffix=args.cord_suffix, landmarks_suffix=args.landmarks_suffix,
                                  overwrite=args.overwrite, progress=args.verbose >= 1)
        print(f"Done: {len(written)} images in {args.o}")
    elif args.step == "select":
        select_next(args)
    else:
        from sct_rootlets.training.predict_to_bids import predict_to_bids

        written = predict_to_bids(args.path_data, model=args.model, suffix=args.suffix, include=args.include,
                                  exclude=args.exclude, device=args.device, threads=args.threads,
                                  overwrite=args.overwrite, command_line=shlex.join([PROG, *argv]))
        print(f"Done: {len(written)} prediction(s) to correct")


def _names(names) -> str:
    shown = ", ".join(names[:NAMED_IN_WARNING])
    return f"{shown} and {len(names) - NAMED_IN_WARNING} more" if len(names) > NAMED_IN_WARNING else shown


def _output_for_select(path: str, overwrite: bool, inputs) -> Path:
    """The list to write, refused (one sentence) where it would replace an input or, without -overwrite, a file."""
    from sct_rootlets.errors import OutputError
    from sct_rootlets.io.outputs import plan_outputs_exist

    output = Path(path)
    if output.is_dir() or output.resolve() in inputs:
        raise OutputError(f"Output {output} would overwrite an input; choose another name with -o.")
    if not output.name.endswith((".yml", ".yaml")):
        raise OutputError(f"Output {output} must end with .yml or .yaml (a qc_fail.yml).")
    plan_outputs_exist([output], overwrite)
    return output


def select_next(args: argparse.Namespace) -> None:
    """`select`: rank the uncorrected images by their predictions' quality scores (quality.select), finding the
    predictions and the corrections as the review does, and write the chosen ones as a qc_fail.yml."""
    from sct_rootlets.errors import RootletsError
    from sct_rootlets.io.atomic import atomic_paths
    from sct_rootlets.quality.select import candidate_pool, choose
    from sct_rootlets.review.items import ReviewFolders, item_for
    from sct_rootlets.review.lists import WRITE_KEY, qc_fail_yml_text
    from sct_rootlets.training.manifest import is_empty_label

    if args.count < 1:
        raise RootletsError("-n must be at least 1.")
    data, pred = Path(args.path_data).expanduser(), Path(args.path_pred).expanduser()
    for folder, what in ((data, "dataset"), (pred, "predictions")):
        if not folder.is_dir():
            raise RootletsError(f"The {what} folder {folder} does not exist.")
    output = _output_for_select(args.o, args.overwrite, {data.resolve(), pred.resolve()})
    # sct_rootlets_batch's output folder holds derivatives/labels; the review takes the derivatives folder.
    derivatives = pred / "derivatives" if (pred / "derivatives" / "labels").is_dir() else pred
    folders = ReviewFolders(data=data.resolve(), pred=derivatives.resolve(),
                            out=(data / "derivatives" / "labels").resolve())

    def is_corrected(image) -> bool:  # a label the manifest would take: an empty mask is no correction
        correction = item_for(image, folders).correction
        return correction.is_file() and not is_empty_label(correction)

    pool = candidate_pool(data, suffix=args.suffix, prediction_of=lambda image: item_for(image, folders).prediction,
                          is_corrected=is_corrected)
    if not pool.scored:
        raise RootletsError(
            f"No image to choose in {data}: of its {args.suffix} images, {len(pool.corrected)} are corrected, "
            f"{len(pool.without_prediction)} have no prediction in {folders.pred_labels} and "
            f"{len(pool.without_quality)} have a prediction without a quality record in its sidecar.")
    if pool.without_prediction:
        logger.warning("Warning: %d image(s) have no prediction in %s and cannot be ranked (not chosen): %s.",
                       len(pool.without_prediction), folders.pred_labels, _names(pool.without_prediction))
    if pool.without_quality:
        logger.warning("Warning: %d prediction(s) have no quality record in their sidecar and cannot be ranked "
                       "(not chosen): %s.", len(pool.without_quality), _names(pool.without_quality))
    chosen = choose(pool.scored, args.count, diverse=args.diverse)
    text = qc_fail_yml_text({WRITE_KEY: [candidate.name for candidate in chosen]}, SELECT_COMMENT)
    with atomic_paths([output], overwrite=True) as (tmp,):
        tmp.write_text(text, encoding="utf-8")
    print(_selection_report(pool, chosen, args))
    print(f"Done: {output} ({len(chosen)} image(s) under {WRITE_KEY})")


def _selection_report(pool, chosen: list, args: argparse.Namespace) -> str:
    """What was chosen, how, and what was left out, with a table of the chosen images."""
    how = "worst score first"
    if args.diverse:
        how = (f"in rounds over sites (participants.tsv column {pool.site_column}), then subjects, worst first"
               if pool.site_column else "in rounds over subjects (no site column in participants.tsv), worst first")
    lines = [f"Chose {len(chosen)} of {len(pool.scored)} scored image(s) without a correction, {how}; "
             f"{len(pool.corrected)} image(s) already corrected."]
    if len(chosen) < args.count:
        lines.append(f"Only {len(chosen)} image(s) could be chosen (-n {args.count}): all of them are listed.")
    width = max(len("image"), *(len(candidate.name) for candidate in chosen))
    lines.append(f"  {'image':<{width}}  score  worst  flags")
    for candidate in chosen:
        quality = candidate.quality
        lines.append(f"  {candidate.name:<{width}}  {quality.score:.3f}  {quality.worst_level or '-':<5}  "
                     f"{';'.join(quality.flag_names) or '-'}")
    return "\n".join(lines)


def main(argv=None) -> int:
    return run_command(get_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
