"""Active learning: predict rootlets for the unlabelled images of a BIDS dataset, as `_desc-auto` derivatives
ready for manual correction (the corrected file then drops `desc-auto` and joins the next dataset version)."""

import logging
from pathlib import Path
from typing import Optional, Sequence

from sct_rootlets.io import bids
from sct_rootlets.io.image import load_input_image
from sct_rootlets.anatomy.postprocess import PostProcessing
from sct_rootlets.io.outputs import sidecar_content, write_label_map
from sct_rootlets.segment import predict_labels

logger = logging.getLogger(__name__)

MANUAL_SUFFIX = "_label-rootlets_dseg"
AUTO_SUFFIX = "_label-rootlets_desc-auto_dseg"


def predict_to_bids(dataset, *, model: Optional[str] = None, suffix=bids.DEFAULT_SUFFIX,
                    include: Optional[str] = None, exclude: Optional[str] = None, device: str = "auto",
                    threads: Optional[int] = None, folds: Optional[Sequence[str]] = None,
                    postprocessing: PostProcessing = PostProcessing(canal_mm=None),
                    overwrite: bool = False, command_line: str = "sct_rootlets_dataset predict-to-bids") -> list:
    """Write `derivatives/labels/<sub>/[<ses>/]anat/<stem>_label-rootlets_desc-auto_dseg.nii.gz` (+ JSON) for
    every selected image (`suffix`: which contrast, see `bids.ImageSuffix`) without a manual rootlets label;
    return the written paths. The whole image is predicted and no cord is computed, so the default
    post-processing leaves out the canal filter (the sidecar then says what was done)."""
    from sct_rootlets.inference.session import InferenceSession
    from sct_rootlets.store.resolve import resolve_model

    dataset = Path(dataset)
    images = bids.select(bids.discover(dataset, suffix)[0], include, exclude)
    todo = []
    for image in images:
        folder = dataset / "derivatives" / "labels" / image.relative_folder
        if (folder / f"{image.stem}{MANUAL_SUFFIX}.nii.gz").is_file():
            continue
        target = folder / f"{image.stem}{AUTO_SUFFIX}.nii.gz"
        if target.exists() and not overwrite:
            logger.info("Keeping %s (use -overwrite to predict again)", target)
            continue
        todo.append((image, target))
    if not todo:
        return []
    resolved = resolve_model(model, folds)
    bids.warn_unlisted_contrasts([image for image, _ in todo], resolved.name, resolved.contrasts)
    session = InferenceSession(resolved, device=device, threads=threads)
    written = []
    for image, target in todo:
        source = load_input_image(image.path)
        labels, quality = predict_labels(session, source, postprocessing)
        options = {**session.options, "input": str(image.path), "postprocessing": postprocessing.as_dict()}
        write_label_map(target, target.with_name(target.name.replace(".nii.gz", ".json")), labels, source.nifti,
                        sidecar_content(command_line=command_line, model=session.model, options=options,
                                        quality=quality),
                        overwrite=True)
        logger.info("Wrote %s", target)
        written.append(target)
    return written
