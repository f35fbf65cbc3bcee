"""Cord masks with a cord model: load once, segment many.

The bundled model is a small nnU-Net v2 network trained here on real T2w scans in randomised contrasts and on
volumes rendered in random contrasts (README, "Cord segmentation"); `-cord-model`
chooses another: SCT's contrast-agnostic model (`sct-contrast-agnostic`, any contrast, used from SCT's folder when
SCT has it), an installed cord model, or an nnU-Net folder. The model runs on the whole image in one tile when the
image fits the model's `max_tile_voxels` at its spacing: the cord runs through the whole field of view, so no tile
can be skipped, and one tile spares the half-patch overlaps of a sliding window. Its mask is cleaned to the cord:
connected pieces much smaller than the largest one (false positives in other tissue) go. A computed cord is then
checked (anatomy.plausibility) before anything relies on it.
"""

import logging
from pathlib import Path
from typing import Optional

import numpy as np
from scipy import ndimage

from sct_rootlets.anatomy.plausibility import implausibility, measure_cord
from sct_rootlets.errors import InstallError, ModelError, RootletsError
from sct_rootlets.io.image import InputImage
from sct_rootlets.options import BUNDLED_CORD_MODEL

logger = logging.getLogger(__name__)

#: The registry name of the bundled cord model (models/sct-rootlets-cord.json).
CORD_MODEL = "sct-rootlets-cord"
#: The task of cord model cards (SCT's name for it).
CORD_TASK = "spinalcord"
#: One tile up to this many voxels at the model's spacing for a network whose first stage has
#: `TILE_REFERENCE_FEATURES` features, as the bundled one (about 1 GB of activations); see `max_tile_voxels`.
MAX_TILE_VOXELS = 12_000_000
TILE_REFERENCE_FEATURES = 8
#: A connected piece of the mask is kept if it holds at least this share of the largest piece's voxels.
MIN_PIECE_SHARE = 0.2


class CordNotFoundError(RootletsError):
    """The model found no spinal cord in an image, or none that can be an adult cord."""


def cord_status(provenance: Optional[dict]) -> tuple:
    """(status, reason) of a run's sidecar `cord_mask` entry: status "given", "computed", "not found", "not
    plausible" or "none" (no cord was wanted); reason "" unless the cord was not plausible."""
    if not provenance:
        return "none", ""
    if not provenance.get("Computed"):
        return "given", ""
    if not provenance.get("Found", True):
        return "not found", ""
    if not provenance.get("Plausible", True):
        return "not plausible", provenance.get("Reason", "")
    return "computed", ""


def cord_was_used(provenance: Optional[dict]) -> bool:
    """Whether a run's sidecar `cord_mask` entry says a cord mask was used (given, or computed and plausible)."""
    return cord_status(provenance)[0] in ("given", "computed")


def cord_note(provenance: Optional[dict]) -> Optional[str]:
    """A line for QC when a cord was wanted but not used (None otherwise)."""
    status, reason = cord_status(provenance)
    if status == "not found":
        return "No cord found: the whole image was predicted."
    if status == "not plausible":
        return f"Computed cord not plausible ({reason}): not used, the whole image was predicted."
    return None


def keep_cord_pieces(mask: np.ndarray, min_share: float = MIN_PIECE_SHARE) -> np.ndarray:
    """The largest 26-connected piece of a binary mask and every piece at least `min_share` of its size (a cord
    interrupted by a lesion or signal loss stays whole; specks in other tissue go). Pieces are found in the mask's
    bounding box, where all of them lie."""
    kept = np.zeros(mask.shape, np.uint8)
    occupied = [np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
                for axis in range(mask.ndim)]
    if occupied[0].size == 0:
        return kept
    box = tuple(slice(int(where[0]), int(where[-1]) + 1) for where in occupied)
    pieces, count = ndimage.label(mask[box], structure=np.ones((3, 3, 3), bool))
    sizes = np.bincount(pieces.ravel())[1:]
    kept[box] = np.isin(pieces, np.flatnonzero(sizes >= min_share * sizes.max()) + 1)
    return kept


def _cord_model_names() -> list:
    from sct_rootlets.store import install, registry

    cards = registry.all_cards()
    return sorted({BUNDLED_CORD_MODEL, *(name for name, card in cards.items() if card.task == CORD_TASK),
                   *(name for name in install.installed_names() if name not in cards)})


def check_cord_model(model: Optional[str]) -> Optional[str]:
    """`model` as `cord_model` takes it, checked without loading anything (a wrong `-cord-model` stops a run before
    any work): a folder, a cord model card that we or SCT have installed (or the bundled one), or an installed
    archive; a rootlets model, an unknown name or a model neither installed nor in SCT is a ModelError."""
    from sct_rootlets.store import install, registry
    from sct_rootlets.store.resolve import sct_copy_of

    if model in (None, BUNDLED_CORD_MODEL, CORD_MODEL) or Path(model).expanduser().is_dir():
        return model
    card = registry.all_cards().get(model)
    if card is not None and card.task != CORD_TASK:
        raise ModelError(f"{model} is a {card.task} model, not a cord model; cord models: "
                         f"{', '.join(_cord_model_names())} (or an nnU-Net model folder).")
    if card is None and model not in install.installed_names():
        if "/" in model or model.startswith("."):
            raise ModelError(f"Cord model folder {model} does not exist.")
        raise ModelError(f"Unknown cord model {model!r}: not a folder, not installed, and not one of "
                         f"{', '.join(_cord_model_names())} (see sct_deepseg_rootlets -list-models).")
    if install.read_installation(model) is None and sct_copy_of(model) is None:
        raise ModelError(f"Cord model {model} is not installed here and SCT has no copy of its release; install it "
                         f"with: sct_deepseg_rootlets -install {model}   (or give a model folder, e.g. SCT's own, "
                         f"with -cord-model FOLDER)")
    return model


def cord_model(model: Optional[str] = None):
    """The given cord model (see `check_cord_model`): a folder, or a name (ours if installed, else SCT's copy of
    its release); None or `bundled`: the bundled cord model, installed from the package on first use."""
    from sct_rootlets.store import install
    from sct_rootlets.store.resolve import resolve_model

    model = check_cord_model(model)
    if model in (None, BUNDLED_CORD_MODEL, CORD_MODEL):
        install.install_model(CORD_MODEL, progress=False)  # a no-op once installed and intact
        model = CORD_MODEL
    return resolve_model(model)


def max_tile_voxels(plans: dict, configuration_name: str) -> int:
    """The largest single tile for a network: `MAX_TILE_VOXELS` scaled by `TILE_REFERENCE_FEATURES` over the width
    of its first stage, as activations grow with the width (SCT's contrast-agnostic network, nnU-Net's default
    width, then gets nnU-Net's sliding window on large images instead of one tile of several GB)."""
    from sct_rootlets.inference.preprocessing import resolve_configuration

    configuration = resolve_configuration(plans, configuration_name)
    architecture = configuration.get("architecture", {}).get("arch_kwargs", {})
    width = (architecture["features_per_stage"][0] if "features_per_stage" in architecture
             else configuration["UNet_base_num_features"])  # nnU-Net plans before version 2.2
    return MAX_TILE_VOXELS * TILE_REFERENCE_FEATURES // max(int(width), TILE_REFERENCE_FEATURES)


class CordSegmenter:
    """The cord model loaded once; `segment` gives a binary mask on an image's own grid."""

    def __init__(self, *, model: Optional[str] = None, device: str = "auto", threads: Optional[int] = None,
                 engine: str = "auto"):
        from sct_rootlets.inference.session import InferenceSession

        self.model = cord_model(model)
        self.session = InferenceSession(self.model, device=device, threads=threads, engine=engine, region="fast",
                                        roi_margin_mm=0.0, max_tile_stretch=float("inf"),
                                        max_tile_voxels=max_tile_voxels(self.model.folder.plans,
                                                                        self.model.folder.configuration))

    def segment(self, image: InputImage) -> np.ndarray:
        """uint8 0/1 cord mask on the image's grid; CordNotFoundError when the model finds no cord."""
        everywhere = np.ones(image.data.shape, bool)
        mask = keep_cord_pieces(self.session.predict(image, everywhere) > 0)
        if not mask.any():
            raise CordNotFoundError(f"No spinal cord was found in {image.path}; give a cord mask with -s.")
        return mask

    def segment_checked(self, image: InputImage) -> tuple:
        """(mask, its CordMeasures) of a cord that may be an adult cord; CordNotFoundError, saying why, for none
        or one that cannot be (anatomy.plausibility): `sct_rootlets_cord` never writes a wrong cord silently."""
        mask = self.segment(image)
        measures = measure_cord(mask, image.nifti.affine)
        reason = implausibility(measures)
        if reason is not None:
            raise CordNotFoundError(f"The cord computed in {image.path} is not plausible ({reason}); check the "
                                    f"image, or try another cord model (-cord-model).")
        return mask, measures

    def options(self) -> dict:
        """The prediction options, as sidecars record them."""
        return {**self.session.options, "region": "whole image, one tile"}

    def provenance(self) -> dict:
        """What a sidecar says about a computed cord mask (`Source`, as in the sidecar's `Model`, for a model used
        from a folder we did not install, e.g. SCT's)."""
        source = {"Source": self.model.source} if self.model.source else {}
        return {"Computed": True, "Found": True, "Model": self.model.name, "Version": self.model.version, **source,
                "ArchiveSHA256": self.model.archive_sha256, "FilesSHA256": self.model.files_sha256}


class CordMasks:
    """The cord mask for each image of a rootlets run: the one given, else one computed by the cord model
    (loaded on first need, then kept), with what a sidecar should say about it."""

    def __init__(self, *, model: Optional[str] = None, device: str = "auto", threads: Optional[int] = None,
                 engine: str = "auto"):
        self._settings = {"model": check_cord_model(model), "device": device, "threads": threads, "engine": engine}
        self._segmenter = None

    def get(self, image: InputImage, given: Optional[np.ndarray] = None, given_path: Optional[Path] = None,
            required: bool = False) -> tuple:
        """(mask or None, provenance). A given mask is used as it is. A computed one is used only if it is found
        and plausible (anatomy.plausibility); otherwise: CordNotFoundError if `required`, else one warning, no
        mask (the caller predicts the whole image) and a provenance saying `"Found": false`, or
        `"Plausible": false` with the reason."""
        if given is not None:
            return given, {"Computed": False, "File": str(given_path)}
        if self._segmenter is None:
            try:
                self._segmenter = CordSegmenter(**self._settings)
            except InstallError as exc:  # e.g. a read-only home: the other way to a cord mask
                raise InstallError(f"{str(exc).rstrip('.')}, or give a cord mask with -s.") from None
        try:
            mask = self._segmenter.segment(image)
        except CordNotFoundError:
            if required:
                raise
            logger.warning("No spinal cord was found in %s: the whole image is predicted.", image.path)
            return None, {**self._segmenter.provenance(), "Found": False}
        measures = measure_cord(mask, image.nifti.affine)
        provenance = {**self._segmenter.provenance(), "Plausible": True, "Measures": measures.as_dict()}
        reason = implausibility(measures)
        if reason is None:
            return mask, provenance
        if required:
            raise CordNotFoundError(f"The cord computed in {image.path} is not plausible ({reason}); give a cord "
                                    f"mask with -s.")
        logger.warning("The cord computed in %s is not plausible (%s): it is not used and the whole image is "
                       "predicted; give a cord mask with -s to use one.", image.path, reason)
        return None, {**provenance, "Plausible": False, "Reason": reason}
