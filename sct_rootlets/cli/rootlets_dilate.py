"""`sct_rootlets_dilate`: greyscale dilation of a label map with sct_maths -dilate semantics."""

import argparse
import sys
from pathlib import Path

from sct_rootlets.cli.common import add_common_arguments, add_dilation_arguments, dilation_options, run_command


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sct_rootlets_dilate",
        description="Dilate a label map as `sct_maths -dilate` does (greyscale: each voxel takes the highest "
                    "label in its neighbourhood, so level values survive), e.g. to make 1-voxel rootlets visible.",
        epilog="Example:\n  sct_rootlets_dilate -i sub-01_T2w_rootlets.nii.gz -dilate 1 -shape disk -dim 2",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-i", required=True, metavar="LABELS", help="Label map to dilate.")
    parser.add_argument("-o", metavar="OUTPUT", help="Output (default: <input stem>_dil.nii.gz beside it).")
    add_dilation_arguments(parser)
    add_common_arguments(parser)
    return parser


def run(args: argparse.Namespace, argv) -> None:
    import nibabel as nib

    from sct_rootlets.io.atomic import atomic_paths
    from sct_rootlets.errors import RootletsError
    from sct_rootlets.io.image import label_image_like, load_label_image, nifti_stem, stored_dtype
    from sct_rootlets.anatomy.postprocess import dilate

    if args.dilate is None:
        raise RootletsError("Give the dilation size with -dilate (e.g. -dilate 2).")
    options = dilation_options(args)
    source = Path(args.i)
    output = Path(args.o) if args.o else source.parent / f"{nifti_stem(source)}_dil.nii.gz"
    if output.exists() and source.exists() and output.samefile(source):
        raise RootletsError(f"Output {output} would overwrite the input; choose another name with -o.")
    labels = load_label_image(source, "label map")
    data = labels.data.astype(stored_dtype(labels.nifti))  # as sct_maths reads it: the type matters for even edges
    dilated = dilate(data, options["dilation"], options["dilation_shape"], options["dilation_dim"])
    with atomic_paths([output], overwrite=args.overwrite) as (tmp,):
        nib.save(label_image_like(dilated, labels.nifti), tmp)
    print(f"Done: {output}")


def main(argv=None) -> int:
    return run_command(get_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
