"""The nnU-Net inference session: load a model once, segment many images.

Images are fed to nnU-Net exactly as SCT feeds them: reoriented to the model's orientation, voxel axes
reversed to nnU-Net's (z, y, x) order with the spacing reversed alike, float32, tile step 0.5, Gaussian
weighting, mirroring off unless asked. The prediction is mapped back to the input's voxel grid.

The network is built from the plans (as nnU-Net's base trainer does) instead of looking the trainer class up by
name: that lookup imports every trainer variant, some of which import timm/torchvision.
"""

import contextlib
import io
import logging
import os
from typing import Optional

import numpy as np

from sct_rootlets.engine import OpenVinoNetwork, cached_onnx_path, select_engine
from sct_rootlets.errors import ModelError
from sct_rootlets.image import InputImage, Reorientation, check_resampling_memory, sct_orientation_to_axcodes
from sct_rootlets.models import ResolvedModel

logger = logging.getLogger(__name__)


def available_cpus() -> int:
    """CPUs this process may run on (respects taskset/cgroup affinity, unlike os.cpu_count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def select_device(spec: str = "auto"):
    """'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N' -> torch.device; ModelError if unavailable."""
    import torch

    spec = spec.strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or (spec.startswith("cuda:") and spec[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ModelError(f"Device {spec} was requested but no CUDA GPU is available; use -device cpu.")
        device = torch.device(spec)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ModelError(f"Device {spec} does not exist; this machine has {torch.cuda.device_count()} GPU(s).")
        return device
    raise ModelError(f"Unknown device {spec!r}; use auto, cpu, cuda or cuda:N.")


def prediction_options(model: ResolvedModel, *, tta: bool, step_size: float, engine: str = "torch",
                       roi_margin_mm: Optional[float] = None) -> dict:
    """The options that decide the labels (unlike device or threads): recorded in sidecars, compared by -resume.
    `roi_margin_mm` is None when the whole image was predicted."""
    return {"tta": tta, "step_size": step_size, "folds": list(model.folder.checkpoints),
            "checkpoints": sorted({path.name for path in model.folder.checkpoints.values()}),
            "orientation": model.orientation, "engine": engine, "roi_margin_mm": roi_margin_mm}


def _load_checkpoint(path):
    """nnU-Net checkpoints are pickles holding more than tensors; load them as nnU-Net itself does."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a damaged file
        raise ModelError(f"Checkpoint {path} cannot be loaded: {exc}") from None


def _build_network(plans_manager, configuration_manager, dataset_json: dict, num_classes: int):
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels

    channels = determine_num_input_channels(plans_manager, configuration_manager, dataset_json)
    if channels != 1:
        raise ModelError(f"The model expects {channels} input images per case; rootlets segmentation gives one.")
    return get_network_from_plans(configuration_manager.network_arch_class_name,
                                  configuration_manager.network_arch_init_kwargs,
                                  configuration_manager.network_arch_init_kwargs_req_import,
                                  channels, num_classes, allow_init=False, deep_supervision=False)


def network_strides(configuration_manager) -> np.ndarray:
    """Total downsampling of the network per axis: a tile's size must be a multiple of it."""
    strides = configuration_manager.network_arch_init_kwargs["strides"]
    return np.prod(np.array(strides, int), axis=0)


#: A region up to this many patch lengths along an axis is covered by one tile there (see `tile_shape`).
MAX_TILE_STRETCH = 1.5


def tile_shape(patch_size, region_shape, strides) -> tuple:
    """Tiles for a region, per axis: the region itself (rounded up to a multiple of the network's stride) when
    it is at most 1.5 patch lengths, else nnU-Net's patch. With the usual step of half a patch, a region between
    one and two patch lengths would take two or three overlapping tiles; one tile over it costs less, and the
    network, being convolutional, runs on any multiple of its stride."""
    patch, strides = np.asarray(patch_size), np.asarray(strides)
    rounded = np.maximum(np.ceil(np.asarray(region_shape) / strides).astype(int) * strides, strides)
    return tuple(int(v) for v in np.where(rounded <= MAX_TILE_STRETCH * patch, rounded, patch))


def region_box(mask: np.ndarray, spacing, margin_mm: float) -> tuple:
    """Slices of the bounding box of `mask`, widened by `margin_mm` on every side and clipped to the array."""
    where = np.argwhere(mask)
    if where.size == 0:
        raise ModelError("The region to predict in is empty (the cord mask has no voxel).")
    margin = np.ceil(margin_mm / np.asarray(spacing, float)).astype(int)
    low = np.maximum(where.min(axis=0) - margin, 0)
    high = np.minimum(where.max(axis=0) + 1 + margin, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high))


class InferenceSession:
    """One loaded model and its predictor settings; call `predict` for each image."""

    def __init__(self, model: ResolvedModel, *, device: str = "auto", tta: bool = False, step_size: float = 0.5,
                 threads: Optional[int] = None, progress: bool = False, engine: str = "torch",
                 roi_margin_mm: Optional[float] = None):
        import torch
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        if not 0 < step_size <= 1:
            raise ModelError(f"Step size {step_size} is outside (0, 1].")
        if roi_margin_mm is not None and roi_margin_mm < 0:
            raise ModelError(f"Region margin {roi_margin_mm} mm must not be negative.")
        if threads is not None and threads < 1:
            raise ModelError(f"Thread count {threads} must be at least 1.")
        self.model = model
        self.roi_margin_mm = roi_margin_mm
        self.device = select_device(device)
        self.threads = threads or available_cpus()
        torch.set_num_threads(self.threads)

        folder = model.folder
        checkpoints = {fold: _load_checkpoint(path) for fold, path in folder.checkpoints.items()}
        first = next(iter(checkpoints.values()))
        try:
            plans_manager = PlansManager(folder.plans)
            configuration_name = first.get("init_args", {}).get("configuration", folder.configuration)
            configuration_manager = plans_manager.get_configuration(configuration_name)
            label_manager = plans_manager.get_label_manager(folder.dataset_json)
            network = _build_network(plans_manager, configuration_manager, folder.dataset_json,
                                     label_manager.num_segmentation_heads)
            parameters = [checkpoint["network_weights"] for checkpoint in checkpoints.values()]
            network.load_state_dict(parameters[0])
        except ModelError:
            raise
        except Exception as exc:  # plans, labels and weights that do not fit each other
            raise ModelError(f"Model {folder.trainer_dir} cannot be built from its plans and weights: {exc}") from None

        # nnU-Net prints a warning about perform_everything_on_device on CPU even when told False.
        with contextlib.redirect_stdout(io.StringIO()):
            self.predictor = nnUNetPredictor(tile_step_size=step_size, use_gaussian=True, use_mirroring=tta,
                                             perform_everything_on_device=self.device.type == "cuda",
                                             device=self.device, verbose=False, verbose_preprocessing=False,
                                             allow_tqdm=progress)
        self.engine = select_engine(engine, self.device)
        executor = network.to(self.device)
        if self.engine == "openvino":
            from sct_rootlets.paths import cache_dir

            onnx_paths = [cached_onnx_path(path, model.file_hashes[path], cache_dir())
                          for path in folder.checkpoints.values()]
            executor = OpenVinoNetwork(network, parameters, onnx_paths, self.threads,
                                       network_strides(configuration_manager))
        self.predictor.manual_initialization(executor, plans_manager, configuration_manager,
                                             parameters, folder.dataset_json, first.get("trainer_name", ""),
                                             first.get("inference_allowed_mirroring_axes"))
        self.options = {"device": str(self.device), "threads": self.threads,
                        **prediction_options(model, tta=tta, step_size=step_size, engine=self.engine)}

    def uses_region(self, cord: Optional[np.ndarray]) -> bool:
        return self.roi_margin_mm is not None and cord is not None

    def options_for(self, cord: Optional[np.ndarray]) -> dict:
        """The session's options for one image, saying whether the prediction was restricted to a region."""
        return {**self.options, "roi_margin_mm": self.roi_margin_mm if self.uses_region(cord) else None}

    def predict(self, image: InputImage, cord: Optional[np.ndarray] = None) -> np.ndarray:
        """Label map (uint8, the model's label values) on the image's own voxel grid.

        With a cord mask (on the image grid) and a session `roi_margin_mm`, the network runs only inside the
        mask's bounding box widened by that margin, with tiles shrunk to that box; everything outside is
        background. The image is normalised as a whole first, so only the tiling differs from a full prediction.
        An image whose resampling to the model's voxel size cannot fit in memory is refused (InputImageError)
        before anything is allocated.
        """
        reorientation = Reorientation.between(image.nifti.affine, sct_orientation_to_axcodes(self.model.orientation))

        def to_network(array):
            return np.ascontiguousarray(reorientation.apply(array).transpose(2, 1, 0))

        target_mm = reorientation.revert_zooms(self.predictor.configuration_manager.spacing[::-1])
        check_resampling_memory(image, target_mm, self.predictor.label_manager.num_segmentation_heads)
        spacing = list(reorientation.apply_to_zooms(image.zooms)[::-1])
        network_input = to_network(image.data)[np.newaxis].astype(np.float32, copy=False)
        if not self.uses_region(cord):
            segmentation = self.predictor.predict_single_npy_array(network_input, {"spacing": spacing}, None, None,
                                                                   False)
        else:
            segmentation = self._predict_in_region(network_input, spacing, to_network(cord) > 0, self.roi_margin_mm)
        labels = reorientation.revert(np.asarray(segmentation).transpose(2, 1, 0))
        return np.ascontiguousarray(labels, dtype=np.uint8)

    def _predict_in_region(self, network_input, spacing, region, margin_mm):
        import torch
        from nnunetv2.inference.data_iterators import PreprocessAdapterFromNpy
        from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape

        predictor = self.predictor
        preprocessed = next(PreprocessAdapterFromNpy([network_input], [None], [{"spacing": spacing}], [None],
                                                     predictor.plans_manager, predictor.dataset_json,
                                                     predictor.configuration_manager, num_threads_in_multithreaded=1))
        data, properties = preprocessed["data"], preprocessed["data_properties"]
        box = self._box_in_preprocessed(region, spacing, margin_mm, properties, data.shape[1:])
        if any(part.stop <= part.start for part in box):  # the region lies where the image is all zeros
            return np.zeros(region.shape, np.uint8)
        crop = data[(slice(None), *box)]
        tile = tile_shape(predictor.configuration_manager.patch_size, crop.shape[1:],
                          network_strides(predictor.configuration_manager))
        full_configuration = predictor.configuration_manager
        try:
            predictor.configuration_manager = _with_patch_size(full_configuration, tile)
            region_logits = predictor.predict_logits_from_preprocessed_data(crop).cpu()
        finally:
            predictor.configuration_manager = full_configuration
        # Half precision, as nnU-Net keeps its logits; background wherever the network did not run.
        logits = torch.zeros((predictor.label_manager.num_segmentation_heads, *data.shape[1:]), dtype=torch.half)
        logits[1:] = -30.0
        logits[(slice(None), *box)] = region_logits
        del data, crop, preprocessed, region_logits
        return convert_predicted_logits_to_segmentation_with_correct_shape(
            logits, predictor.plans_manager, full_configuration, predictor.label_manager, properties)

    @staticmethod
    def _box_in_preprocessed(region, spacing, margin_mm, properties, preprocessed_shape) -> tuple:
        """The widened region box on the input grid, carried through nnU-Net's crop-to-nonzero and resampling."""
        box = region_box(region, spacing, margin_mm)
        crop = properties["bbox_used_for_cropping"]
        cropped_shape = properties["shape_after_cropping_and_before_resampling"]
        scale = np.asarray(preprocessed_shape) / np.asarray(cropped_shape)
        slices = []
        for axis, part in enumerate(box):
            low = max(part.start - crop[axis][0], 0) * scale[axis]
            high = min(part.stop - crop[axis][0], cropped_shape[axis]) * scale[axis]
            slices.append(slice(int(np.floor(low)), int(min(np.ceil(high), preprocessed_shape[axis]))))
        return tuple(slices)


def _with_patch_size(configuration_manager, patch_size):
    from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager

    configuration = dict(configuration_manager.configuration)
    configuration["patch_size"] = list(patch_size)
    return ConfigurationManager(configuration)
