"""nnU-Net's preprocessing and export for the fast region mode, without importing torch.

nnU-Net's own modules for these steps (plans handling, cropping, resampling, export) all import torch at their
top, although the steps are numpy and scipy: over a second of every run where OpenVINO runs the network. What the
fast mode needs is done here in the same order on the same arrays, for models whose plans use nnU-Net's default
pieces (`NetworkPlans.unsupported` says which part is not, and the session then uses nnU-Net's own objects):

- preprocessing (nnU-Net's `DefaultPreprocessor.run_case_npy`): transpose to the plans' axis order, crop to the
  bounding box of the filled non-zero mask, normalise each channel with nnU-Net's own normalisation class (its
  module imports no torch), resample to the plans' spacing (`resampling.resample_to_shape`). nnU-Net also
  resamples the non-zero mask, which inference never reads: skipped.
- export (nnU-Net's `convert_predicted_logits_to_segmentation_with_correct_shape`): resample the logits back to
  the cropped grid, argmax (label models: nnU-Net skips the softmax too), put the crop back, transpose back. With
  linear resampling the logits are resampled only in the box that can hold a label other than background (see
  `labels_from_logits`).

Tests compare each step's arrays with nnU-Net's, bit for bit.
"""

from copy import deepcopy
from dataclasses import dataclass
from typing import Optional

import numpy as np

from sct_rootlets.errors import ModelError
from sct_rootlets.inference.resampling import compute_new_shape, resample_to_shape

#: Logits of a voxel no tile ran on: 0 for background, -30 for every other label, so background wins.
BACKGROUND_LOGIT, OTHER_LOGIT = 0.0, -30.0
#: The plans' resampling function and preprocessor this module reproduces.
_RESAMPLING = "resample_data_or_seg_to_shape"
_RESAMPLING_KEYWORDS = {"is_seg", "order", "order_z", "force_separate_z", "separate_z_anisotropy_threshold"}


def resolve_configuration(plans: dict, name: str, visited: tuple = ()) -> dict:
    """A configuration of the plans with what it inherits (nnU-Net's `inherits_from`)."""
    configurations = plans.get("configurations", {})
    if name not in configurations:
        raise ModelError(f"The plans have no configuration {name!r} (they have {', '.join(configurations)}).")
    configuration = deepcopy(configurations[name])
    parent = configuration.get("inherits_from")
    if parent is not None:
        if parent in visited + (name,):
            raise ModelError(f"The plans' configurations inherit from each other in a circle ({name}, {parent}).")
        resolved = resolve_configuration(plans, parent, visited + (name,))
        resolved.update(configuration)
        configuration = resolved
    return configuration


def label_values(dataset_json: dict) -> list:
    """nnU-Net's `LabelManager.all_labels`: every label value, sorted, the ignore label left out."""
    values = set()
    for name, value in dataset_json.get("labels", {}).items():
        if name == "ignore":
            continue
        values.update(int(v) for v in (value if isinstance(value, (list, tuple)) else [value]))
    return sorted(values)


@dataclass(frozen=True)
class NetworkPlans:
    """What inference reads from a model's plans and dataset.json, without nnU-Net's plans module."""
    plans: dict
    configuration_name: str
    configuration: dict
    num_heads: int
    unsupported: Optional[str]  # why this module cannot stand in for nnU-Net here; None when it can

    @classmethod
    def read(cls, plans: dict, dataset_json: dict, configuration_name: str) -> "NetworkPlans":
        configuration = resolve_configuration(plans, configuration_name)
        labels = dataset_json.get("labels", {})
        regions = any(isinstance(value, (list, tuple)) and len(value) > 1 for value in labels.values())
        problems = []
        if regions:
            problems.append("region-based labels")
        if plans.get("label_manager", "LabelManager") != "LabelManager":
            problems.append(f"label manager {plans['label_manager']}")
        if configuration.get("preprocessor_name", "DefaultPreprocessor") != "DefaultPreprocessor":
            problems.append(f"preprocessor {configuration['preprocessor_name']}")
        if len(configuration.get("spacing", [])) != 3:
            problems.append("a 2D configuration")
        for kind in ("data", "probabilities"):
            keywords = configuration.get(f"resampling_fn_{kind}_kwargs", {})
            if configuration.get(f"resampling_fn_{kind}") != _RESAMPLING or keywords.get("is_seg") \
                    or set(keywords) - _RESAMPLING_KEYWORDS:
                problems.append(f"{kind} resampling {configuration.get(f'resampling_fn_{kind}')}")
        for scheme in configuration.get("normalization_schemes", []):
            if _normalizer_class(scheme) is None:
                problems.append(f"normalisation {scheme}")
        heads = len(label_values(dataset_json)) if not regions else 0
        return cls(plans, configuration_name, configuration, heads, "; ".join(problems) or None)

    @property
    def spacing(self) -> list:
        return list(self.configuration["spacing"])

    @property
    def patch_size(self) -> tuple:
        return tuple(self.configuration["patch_size"])

    @property
    def strides(self) -> np.ndarray:
        """Total downsampling of the network per axis: a tile's size must be a multiple of it."""
        return np.prod(np.array(self.configuration["architecture"]["arch_kwargs"]["strides"], int), axis=0)

    @property
    def transpose_forward(self) -> list:
        return list(self.plans["transpose_forward"])

    @property
    def transpose_backward(self) -> list:
        return list(self.plans["transpose_backward"])

    def resampling(self, kind: str) -> dict:
        """Keyword arguments of `resample_to_shape` for "data" or "probabilities"."""
        keywords = dict(self.configuration.get(f"resampling_fn_{kind}_kwargs", {}))
        keywords.pop("is_seg", None)
        return keywords

    def intensity_properties(self, channel: int) -> dict:
        properties = self.plans.get("foreground_intensity_properties_per_channel")
        if properties is None:
            properties = self.plans.get("foreground_intensity_properties_by_modality", {})
        return properties[str(channel)]


def _normalizer_class(scheme: str):
    """nnU-Net's normalisation class of that name, from its module of default schemes (which imports no torch)."""
    from nnunetv2.preprocessing.normalization import default_normalization_schemes as schemes

    found = getattr(schemes, scheme, None)
    return found if isinstance(found, type) and issubclass(found, schemes.ImageNormalization) else None


def nonzero_box(mask: np.ndarray) -> list:
    """acvl_utils' `get_bbox_from_mask`: [[start, stop], ...] of the mask's voxels per axis; the whole axis where
    the mask is empty."""
    box = []
    for axis in range(mask.ndim):
        occupied = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append([int(occupied[0]), int(occupied[-1]) + 1] if occupied.size else [0, mask.shape[axis]])
    return box


@dataclass
class CroppedImage:
    """An image after the first steps of nnU-Net's preprocessing (transposed, cropped to its non-zero box), with
    the shape resampling will give it: enough to plan tiles before the costly part (`normalise_and_resample`)."""
    data: np.ndarray
    outside: np.ndarray  # nnU-Net's "seg" of the non-zero region: -1 outside it, 0 inside
    properties: dict
    original_spacing: list
    new_shape: np.ndarray


def crop_to_nonzero(network_input: np.ndarray, spacing, plans: NetworkPlans) -> CroppedImage:
    """nnU-Net's preprocessing of one image (channels, z, y, x) up to its crop to the filled non-zero box."""
    from scipy.ndimage import binary_fill_holes

    data = network_input.astype(np.float32)  # a copy, as nnU-Net makes
    data = data.transpose([0, *[axis + 1 for axis in plans.transpose_forward]])
    original_spacing = [spacing[axis] for axis in plans.transpose_forward]
    properties = {"spacing": list(spacing), "shape_before_cropping": data.shape[1:]}
    nonzero = data[0] != 0
    for channel in range(1, data.shape[0]):
        nonzero |= data[channel] != 0
    if not nonzero.all():  # (most MR images: no zero voxel, so no hole to fill)
        nonzero = binary_fill_holes(nonzero)
    box = nonzero_box(nonzero)
    slicer = tuple(slice(start, stop) for start, stop in box)
    data = data[(slice(None), *slicer)]
    properties["bbox_used_for_cropping"] = box
    properties["shape_after_cropping_and_before_resampling"] = data.shape[1:]
    return CroppedImage(data, np.where(nonzero[slicer], np.int8(0), np.int8(-1)), properties, original_spacing,
                        compute_new_shape(data.shape[1:], original_spacing, plans.spacing))


def normalise_and_resample(cropped: CroppedImage, plans: NetworkPlans, threads: int = 1) -> tuple:
    """The rest of nnU-Net's preprocessing: each channel normalised, then resampled to the plans' spacing.
    (float32 array, properties)."""
    data = cropped.data
    for channel in range(data.shape[0]):
        normalizer = _normalizer_class(plans.configuration["normalization_schemes"][channel])(
            use_mask_for_norm=plans.configuration["use_mask_for_norm"][channel],
            intensityproperties=plans.intensity_properties(channel))
        data[channel] = normalizer.run(data[channel], cropped.outside)
    data = resample_to_shape(data, cropped.new_shape, cropped.original_spacing, plans.spacing, threads=threads,
                             **plans.resampling("data"))
    return np.ascontiguousarray(data, dtype=np.float32), cropped.properties


def preprocess(network_input: np.ndarray, spacing, plans: NetworkPlans, threads: int = 1) -> tuple:
    """nnU-Net's preprocessing of one image (channels, z, y, x) with its spacing: (float32 array, properties as
    nnU-Net names them: spacing, shape_before_cropping, bbox_used_for_cropping,
    shape_after_cropping_and_before_resampling). `threads` share the resampling's work."""
    return normalise_and_resample(crop_to_nonzero(network_input, spacing, plans), plans, threads)


def _label_box(logits: np.ndarray, new_shape, linear: bool) -> tuple:
    """The box of the resampled grid outside which every label is background: all of it unless resampling is
    linear. A linear interpolation weighs the same neighbours alike in every channel, with weights >= 0, so where
    every neighbour's logits favour background (or tie, which argmax gives to background) so do the interpolated
    ones, rounded alike. The box covers the neighbours of the voxels that do not, with a voxel to spare."""
    new_shape = np.asarray(new_shape)
    full = tuple(slice(0, int(size)) for size in new_shape)
    if not linear:
        return full
    labelled = np.argmax(logits, axis=0) != 0
    if not labelled.any():
        return tuple(slice(0, 0) for _ in new_shape)
    box = nonzero_box(labelled)
    scale = new_shape / np.array(logits.shape[1:])  # output voxels per input voxel
    slices = []
    for (start, stop), factor, size in zip(box, scale, new_shape):
        low = int(np.floor((start - 1) * factor)) - 2
        high = int(np.ceil((stop + 1) * factor)) + 2
        slices.append(slice(max(low, 0), min(high, int(size))))
    return tuple(slices)


def labels_from_logits(region_logits: np.ndarray, box: tuple, preprocessed_shape, properties: dict,
                       plans: NetworkPlans) -> np.ndarray:
    """Label map (uint8) on the image's grid before preprocessing from the logits of `box` (slices over the
    preprocessed grid; half precision, as nnU-Net keeps them), every voxel outside it background: what nnU-Net's
    export gives for whole-grid logits with background outside the box, without whole-grid logits where no
    resampling is needed, and resampling only where a label other than background can come out."""
    cropped_shape = tuple(properties["shape_after_cropping_and_before_resampling"])
    cropped = np.zeros(cropped_shape, np.uint8)
    if tuple(preprocessed_shape) == cropped_shape:
        cropped[box] = np.argmax(region_logits, axis=0)
    else:
        logits = np.full((region_logits.shape[0], *preprocessed_shape), OTHER_LOGIT, dtype=np.float16)
        logits[0] = BACKGROUND_LOGIT
        logits[(slice(None), *box)] = region_logits
        keywords = plans.resampling("probabilities")
        linear = keywords.get("order", 3) <= 1 and keywords.get("order_z", 0) <= 1
        spacing = [properties["spacing"][axis] for axis in plans.transpose_forward]
        inside = _label_box(logits, cropped_shape, linear)
        resampled = resample_to_shape(logits, cropped_shape, plans.spacing, spacing, box=inside, **keywords)
        cropped[inside] = np.argmax(resampled, axis=0)
    labels = np.zeros(properties["shape_before_cropping"], np.uint8)
    labels[tuple(slice(start, stop) for start, stop in properties["bbox_used_for_cropping"])] = cropped
    return labels.transpose(plans.transpose_backward)
