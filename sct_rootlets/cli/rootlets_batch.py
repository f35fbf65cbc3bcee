"""`sct_rootlets_batch`: segment (and level, and QC) every image of one contrast (`-suffix`) of a BIDS dataset."""

import argparse
import shlex
import sys
from pathlib import Path

from sct_rootlets.cli.common import add_common_arguments, add_suffix_argument, run_command
from sct_rootlets.cli.segmentation_options import (add_levels_method_argument, add_segmentation_arguments,
                                                   postprocessing_from_args)

PROG = "sct_rootlets_batch"


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Segment rootlets in every image of one contrast (-suffix; default *_T2w) of a BIDS dataset "
                    "with the model kept loaded: BIDS derivatives, spinal levels where a manual cord mask exists "
                    "(derivatives/labels), one QC report, a summary CSV, failures isolated and listed, -resume to "
                    "skip finished work.",
        epilog="Examples:\n"
               f"  {PROG} -path-data ~/data/spine-generic -path-output ~/results/rootlets -jobs 2\n"
               f"  {PROG} -path-data DS -path-output OUT -include qc_fail_subjects.txt -resume\n"
               f"  {PROG} -path-data DS -path-output OUT -suffix UNIT1        # MP2RAGE's UNIT1 images\n"
               f"  {PROG} -path-data DS -suffix inv-1_MP2RAGE -include sub-01 -list-images\n"
               f"  {PROG} -config batch/config_rootlets_batch.yml -scheduler tcp://head-node:8786",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    run = parser.add_argument_group("dataset and execution")
    run.add_argument("-path-data", dest="path_data", metavar="BIDS", help="BIDS dataset to process.")
    run.add_argument("-path-output", dest="path_output", metavar="OUT", help="Output folder.")
    run.add_argument("-config", metavar="YML", help="YAML file of options (keys as the option names without "
                                                    "the dash, e.g. path_data, jobs); the command line wins.")
    add_suffix_argument(run)
    run.add_argument("-list-images", action="store_true", dest="list_images",
                     help="Print the images that would be processed (paths relative to the dataset, one a line) "
                          "and stop: what batch/process_rootlets.sh runs on.")
    run.add_argument("-include", metavar="REGEX|LIST", help="Only sub-XX[/ses-YY] matching a regex, listed "
                                                            "(spaces or commas), or listed in a file.")
    run.add_argument("-exclude", metavar="REGEX|LIST", help="Skip these (same forms as -include).")
    run.add_argument("-jobs", type=int, default=1, help="Local worker processes, each with its own model and "
                                                        "1/N of the CPUs. Default: 1.")
    run.add_argument("-scheduler", metavar="ADDRESS", help="Run on this Dask distributed scheduler instead.")
    run.add_argument("-resume", action="store_true", help="Skip images whose outputs exist and whose sidecar "
                                                          "names the same model and options.")
    run.add_argument("-no-qc", action="store_true", dest="no_qc", help="Do not write the QC report.")
    add_segmentation_arguments(parser)
    add_levels_method_argument(parser.add_argument_group("spinal levels (where a cord mask exists)"))
    add_common_arguments(parser)
    return parser


def _apply_config(parser: argparse.ArgumentParser, argv) -> None:
    """Defaults from -config, so that the command line still overrides them."""
    from sct_rootlets.errors import RootletsError

    known, _ = parser.parse_known_args(argv)
    if not known.config:
        return
    import yaml

    try:
        config = yaml.safe_load(Path(known.config).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RootletsError(f"Cannot read the config file {known.config}: {exc}") from None
    destinations = {action.dest for action in parser._actions}
    unknown = sorted(set(config) - destinations)
    if not isinstance(config, dict) or unknown:
        raise RootletsError(f"Unknown option(s) in {known.config}: {', '.join(map(str, unknown))}.")
    # A YAML number is checked by its option as the command line's text would be (argparse converts text defaults
    # only): `suffix: 1.5` or `step_size: 0` is refused as on the command line, not taken as it is.
    checked = {action.dest for action in parser._actions if action.type is not None and action.nargs is None}
    parser.set_defaults(**{key: str(value) if key in checked and isinstance(value, (int, float)) else value
                           for key, value in config.items()})


def _chosen_images(args, dataset: Path) -> list:
    """The images to process; what discovery found and skipped is printed unless only the list is asked for."""
    from sct_rootlets.io import bids

    images, skipped = bids.discover(dataset, args.suffix)
    chosen = bids.select(images, args.include, args.exclude)
    if not args.list_images:
        subjects = {image.subject for image in chosen}
        print(f"Found {len(images)} {args.suffix} image(s); processing {len(chosen)} in {len(subjects)} subject(s); "
              f"{sum(bool(i.labels.get('cord')) for i in chosen)} with a manual cord mask (the others: computed).")
        for path, reason in skipped:
            print(f"  skipped {path.relative_to(dataset)}: {reason}")
    return chosen


def run(args: argparse.Namespace, argv) -> None:
    from sct_rootlets import batch
    from sct_rootlets.errors import RootletsError

    if not args.path_data or not (args.path_output or args.list_images):
        raise RootletsError("Give the dataset and the output folder (-path-data, -path-output, or in -config).")
    dataset = Path(args.path_data)
    if not dataset.is_dir():
        raise RootletsError(f"Dataset folder {dataset} does not exist.")
    if args.jobs < 1:
        raise RootletsError("-jobs must be at least 1.")
    chosen = _chosen_images(args, dataset)
    if args.list_images:  # none is an answer too: a subject without this contrast
        for image in chosen:
            print(image.path.relative_to(dataset).as_posix())
        return
    if not chosen:
        raise RootletsError(f"No {args.suffix} image to process (check -suffix, -include/-exclude and the dataset "
                            f"layout).")
    output = Path(args.path_output).resolve()
    if not (args.resume or args.overwrite) and any(
            batch.derivative_paths(image, output)["dseg"].exists() for image in chosen):
        raise RootletsError(f"{output} already holds results; use -resume to skip up-to-date work or "
                            f"-overwrite to recompute everything.")
    settings = batch.BatchSettings(
        output=output, model=args.model, folds=tuple(args.folds) if args.folds else None,
        device=args.device, tta=args.tta, step_size=args.step_size, threads=args.threads, engine=args.engine,
        region=args.region, roi_margin_mm=args.roi_margin_mm, cord_model=args.cord_model,
        postprocessing=postprocessing_from_args(args),
        levels_method=args.levels_method, qc=not args.no_qc,
        dataset_name=dataset.resolve().name, command_line=shlex.join([PROG, *argv]))
    results = batch.run_batch(chosen, settings, jobs=args.jobs, scheduler=args.scheduler, resume=args.resume,
                              progress=args.verbose >= 1, source=dataset)
    done = sum(r.status == "done" for r in results)
    up_to_date = sum(r.status == "skipped" for r in results)
    failed = [r for r in results if r.status == "failed"]
    print(f"Done: {done} segmented, {up_to_date} up to date, {len(failed)} failed. "
          f"Summary: {settings.output / 'results' / batch.SUMMARY_FILE}; which to check first: "
          f"{settings.output / 'results' / batch.QUALITY_FILE}")
    if failed:
        listing = "; ".join(f"{r.key} ({Path(r.image).name}: {r.error})" for r in failed)
        raise RootletsError(f"{len(failed)} of {len(results)} image(s) failed: {listing}. Logs in "
                            f"{settings.output / 'log'}.")


def main(argv=None) -> int:
    return run_command(get_parser(), run, argv, prepare=_apply_config)


if __name__ == "__main__":
    sys.exit(main())
