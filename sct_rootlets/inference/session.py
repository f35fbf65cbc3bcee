"""The nnU-Net inference session: load a model once, segment many images.

Images are fed to nnU-Net exactly as SCT feeds them: reoriented to the model's orientation, voxel axes
reversed to nnU-Net's (z, y, x) order with the spacing reversed alike, float32, tile step 0.5, Gaussian
weighting, mirroring off unless asked. The prediction is mapped back to the input's voxel grid.

Where OpenVINO runs the fast region mode from cached ONNX exports (the default on a CPU), nothing here imports
torch: the device is chosen without it where no GPU driver is present, the checkpoint is not read (its facts are
cached beside the export), and preprocessing, tiling and export are numpy (`preprocessing`, `resampling`).

The network is built from the plans (as nnU-Net's base trainer does) instead of looking the trainer class up by
name: that lookup imports every trainer variant, some of which import timm/torchvision. nnU-Net's predictor (whose
module imports torch's compiler, over a second of start-up) is made only for the whole-image and exact modes; the
fast mode tiles its region itself, with nnU-Net's preprocessing, Gaussian weights, steps and export.
"""

import concurrent.futures
import contextlib
import functools
import io
import itertools
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from typing import Optional

import numpy as np

from sct_rootlets.inference.checkpoint import load_checkpoint
from sct_rootlets.inference.confidence import NetworkConfidence, network_confidence
from sct_rootlets.inference.engines import (OpenVinoNetwork, cached_onnx_path, checkpoint_facts, export_onnx,
                                            read_checkpoint_facts, select_engine, write_checkpoint_facts)
from sct_rootlets.inference.preprocessing import (BACKGROUND_LOGIT, OTHER_LOGIT, NetworkPlans, crop_to_nonzero,
                                                  labels_from_logits, normalise_and_resample, preprocess)
from sct_rootlets.inference.nnunet import require_nnunet
from sct_rootlets.errors import ModelError
from sct_rootlets.io.image import InputImage, Reorientation, check_resampling_memory, sct_orientation_to_axcodes
from sct_rootlets.store.resolve import ResolvedModel
from sct_rootlets.options import DEFAULT_ROI_MARGIN_MM, REGION_MODES

logger = logging.getLogger(__name__)


def available_cpus() -> int:
    """CPUs this process may run on (respects taskset/cgroup affinity, unlike os.cpu_count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass(frozen=True)
class Device:
    """Where the network runs, named as torch names devices ("cpu", "cuda", "cuda:1"), known without torch."""
    type: str
    index: Optional[int] = None

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def torch(self):
        import torch

        return torch.device(str(self))


#: Files present where a GPU driver torch could use is installed: NVIDIA's (Linux, WSL2), AMD's ROCm (whose torch
#: answers `torch.cuda`), NVIDIA Jetson's.
GPU_DRIVER_FILES = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg", "/dev/kfd",
                    "/etc/nv_tegra_release")


def gpu_driver_present() -> bool:
    """Whether this machine shows a GPU driver (a file of `GPU_DRIVER_FILES`, or nvidia-smi on PATH): without one,
    torch can find no CUDA device."""
    return any(os.path.exists(path) for path in GPU_DRIVER_FILES) or shutil.which("nvidia-smi") is not None


def choose_device(spec: str = "auto") -> Device:
    """'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N' -> Device; ModelError if unavailable. torch is
    asked (and imported) only when it may find a GPU: for "auto", when it is already imported or a GPU driver is
    present; a CPU-only machine gets "cpu" without importing it."""
    spec = spec.strip().lower()
    index = int(spec[5:]) if spec.startswith("cuda:") and spec[5:].isdigit() else None
    if spec not in ("auto", "cpu", "cuda") and index is None:
        raise ModelError(f"Unknown device {spec!r}; use auto, cpu, cuda or cuda:N.")
    if spec == "cpu" or (spec == "auto" and "torch" not in sys.modules and not gpu_driver_present()):
        return Device("cpu")
    import torch

    if spec == "auto":
        return Device("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        raise ModelError(f"Device {spec} was requested but no CUDA GPU is available; use -device cpu.")
    if index is not None and index >= torch.cuda.device_count():
        raise ModelError(f"Device {spec} does not exist; this machine has {torch.cuda.device_count()} GPU(s).")
    return Device("cuda", index)


def select_device(spec: str = "auto"):
    """`choose_device` as a torch.device (training, which needs torch anyway)."""
    return choose_device(spec).torch()


def prediction_options(model: ResolvedModel, *, tta: bool, step_size: float, engine: str = "torch",
                       region: str = "whole", roi_margin_mm: Optional[float] = None) -> dict:
    """The options that decide the labels (unlike device or threads): recorded in sidecars, compared by -resume.
    `region` is how the network covered the image (whole, exact or fast); `roi_margin_mm` is None for whole."""
    return {"tta": tta, "step_size": step_size, "folds": list(model.folder.checkpoints),
            "checkpoints": sorted({path.name for path in model.folder.checkpoints.values()}),
            "orientation": model.orientation, "engine": engine, "region": region,
            "roi_margin_mm": None if region == "whole" else roi_margin_mm}


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


def tile_shape(patch_size, region_shape, strides, max_stretch: float = MAX_TILE_STRETCH,
               max_voxels: Optional[int] = None) -> tuple:
    """Tiles for a region, per axis: the region itself (rounded up to a multiple of the network's stride) when
    it is at most `max_stretch` patch lengths, else nnU-Net's patch. With the usual step of half a patch, a region
    between one and two patch lengths would take two or three overlapping tiles; one tile over it costs less, and
    the network, being convolutional, runs on any multiple of its stride. A tile of more than `max_voxels` voxels
    falls back to the patch (memory)."""
    patch, strides = np.asarray(patch_size), np.asarray(strides)
    rounded = np.maximum(np.ceil(np.asarray(region_shape) / strides).astype(int) * strides, strides)
    tile = np.where(rounded <= max_stretch * patch, rounded, patch)
    if max_voxels is not None and np.prod(tile) > max_voxels:
        tile = patch
    return tuple(int(v) for v in tile)


def pad_to_tile(data: np.ndarray, tile) -> tuple:
    """acvl_utils' `pad_nd_image(data, tile, "constant", {"value": 0}, return_slicer=True)` for a numpy array
    (channels first): zeros around the content (the odd voxel after it) up to the tile's size where it is smaller;
    (padded array, slices that take the padding off again)."""
    old = np.array(data.shape)
    new = np.array([*data.shape[:data.ndim - len(tile)], *tile])
    difference = np.maximum(new, old) - old
    below, above = difference // 2, difference // 2 + difference % 2
    padded = np.pad(data, list(zip(below, above)), "constant", constant_values=0) if difference.any() else data
    return padded, tuple(slice(int(low), int(size - high)) for low, high, size in zip(below, above, padded.shape))


def sliding_window_steps(image_size, tile_size, step_size: float) -> list:
    """nnU-Net's `compute_steps_for_sliding_window`: each axis's tile starts, about `step_size` tiles apart."""
    steps = []
    for size, tile in zip(image_size, tile_size):
        count = int(np.ceil((size - tile) / (tile * step_size))) + 1
        stride = (size - tile) / (count - 1) if count > 1 else 99999999999
        steps.append([int(np.round(stride * i)) for i in range(count)])
    return steps


@functools.lru_cache(maxsize=2)
def gaussian_weights(tile: tuple, sigma_scale: float = 1. / 8, value_scaling_factor: float = 10) -> np.ndarray:
    """nnU-Net's `compute_gaussian(tile, sigma_scale, value_scaling_factor)` in half precision, as a numpy array
    (torch converts the float64 map to half through float32; no zero left)."""
    from scipy.ndimage import gaussian_filter

    impulse = np.zeros(tile)
    impulse[tuple(size // 2 for size in tile)] = 1
    gaussian = gaussian_filter(impulse, [size * sigma_scale for size in tile], 0, mode="constant", cval=0)
    gaussian /= (np.max(gaussian) / value_scaling_factor)
    gaussian = gaussian.astype(np.float32).astype(np.float16)
    gaussian[gaussian == 0] = np.min(gaussian[gaussian != 0])
    return gaussian


def region_box(mask: np.ndarray, spacing, margin_mm: float) -> tuple:
    """Slices of the bounding box of `mask`, widened by `margin_mm` on every side and clipped to the array."""
    occupied = [np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
                for axis in range(mask.ndim)]  # per axis, the indices the mask reaches: no voxel list needed
    if occupied[0].size == 0:
        raise ModelError("The region to predict in is empty (the cord mask has no voxel).")
    margin = np.ceil(margin_mm / np.asarray(spacing, float)).astype(int)
    low = np.maximum(np.array([o[0] for o in occupied]) - margin, 0)
    high = np.minimum(np.array([o[-1] for o in occupied]) + 1 + margin, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high))


def _widened(box: tuple, voxels: int, shape) -> tuple:
    return tuple(slice(max(part.start - voxels, 0), min(part.stop + voxels, size)) for part, size in zip(box, shape))


class _UnitLogits:
    """Stand-in for nnU-Net's predictor in its fold-ensembling method: fold i's "logits" are the i-th unit vector,
    so the method's result is the weight it gives each fold."""
    verbose = False

    def __init__(self, folds: int):
        self.list_of_parameters = list(range(folds))
        self.network = self  # the method loads each fold's parameters into its network: here, a fold number
        self._fold = None

    def load_state_dict(self, fold):
        self._fold = fold

    def predict_sliding_window_return_logits(self, data):
        import torch

        unit = torch.zeros(len(self.list_of_parameters), dtype=torch.float64)
        unit[self._fold] = 1
        return unit


@functools.lru_cache(maxsize=None)
def predictor_fold_weights(folds: int) -> tuple:
    """How the installed nnU-Net's predictor combines the logits of `folds` folds: (how many times it adds each
    fold's logits, the divisor of that sum). Stock nnU-Net adds each once and divides by the fold count. SCT's fork
    nnunetv2-neuropoly (2.6.2) adds the first fold's logits twice (its per-fold option made the `else:` after
    `if prediction is None:` a second `if`): its ensembles weight fold 0 double, and a single fold's logits come out
    doubled. The fast mode combines folds itself and must do as the predictor does for its labels to equal the
    predictor's, so it asks the fork's ensembling method (on `_UnitLogits`) once per fork version and fold count
    (the answer is kept in the cache folder: asking imports torch). Without the fork, stock's answer is known, and
    the predictor's module (over a second of start-up) is not imported for it."""
    import importlib.metadata

    stock = ((1,) * folds, folds)
    try:
        version = importlib.metadata.version("nnunetv2-neuropoly")
    except importlib.metadata.PackageNotFoundError:
        return stock
    key = f"nnunetv2-neuropoly {version}, {folds} folds"
    cached = _cached_fold_weights().get(key)
    if isinstance(cached, list) and len(cached) == 2 and len(cached[0]) == folds:
        return tuple(int(weight) for weight in cached[0]), int(cached[1])
    answer = _ask_predictor_fold_weights(folds)
    if answer is not None:
        _cache_fold_weights(key, answer)
    return answer or stock


#: Where the fork's answers are kept (in `paths.cache_dir()`): asking imports torch and nnU-Net's predictor.
_FOLD_WEIGHTS_FILE = "nnunet_fold_weights.json"


def _cached_fold_weights() -> dict:
    import json

    from sct_rootlets.paths import cache_dir

    try:
        cached = json.loads((cache_dir() / _FOLD_WEIGHTS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return cached if isinstance(cached, dict) else {}


def _cache_fold_weights(key: str, answer: tuple) -> None:
    import json

    from sct_rootlets.errors import OutputError
    from sct_rootlets.io.atomic import atomic_paths
    from sct_rootlets.paths import cache_dir

    cached = {**_cached_fold_weights(), key: [list(answer[0]), answer[1]]}
    try:
        cache_dir().mkdir(parents=True, exist_ok=True)
        with atomic_paths([cache_dir() / _FOLD_WEIGHTS_FILE], overwrite=True) as (temporary,):
            temporary.write_text(json.dumps(cached, indent=1))
    except (OSError, OutputError) as exc:
        logger.debug("Not caching how nnU-Net combines folds: %s", exc)


def _ask_predictor_fold_weights(folds: int) -> Optional[tuple]:
    """`predictor_fold_weights` from the installed predictor's own ensembling method; None (with a warning) where
    the stand-in does not fit it."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    try:
        shares = nnUNetPredictor.predict_logits_from_preprocessed_data(_UnitLogits(folds), torch.zeros(1)).tolist()
    except Exception as exc:  # a predictor this stand-in does not fit: labels may differ from it by rounding
        logger.warning("Cannot tell how the installed nnU-Net combines folds (%s): the fast mode takes their mean.",
                       exc)
        return None
    for divisor in range(1, 4 * folds + 1):
        weights = [share * divisor for share in shares]
        if all(abs(weight - round(weight)) < 1e-9 for weight in weights):
            return tuple(int(round(weight)) for weight in weights), divisor
    logger.warning("The installed nnU-Net combines folds with weights %s: the fast mode takes their mean.", shares)
    return None


def mirror_flips(mirror_axes) -> list:
    """The axis combinations (of a batch of tiles: batch, channel, then the spatial axes) that test-time
    augmentation flips, in nnU-Net's order: every non-empty combination of the mirror axes."""
    axes = [axis + 2 for axis in mirror_axes]
    return [combination for count in range(1, len(axes) + 1) for combination in itertools.combinations(axes, count)]


@dataclass
class PreparedImage:
    """An image preprocessed for a session's fast mode (`InferenceSession.prepare`)."""
    image: InputImage
    data: np.ndarray
    properties: dict


class InferenceSession:
    """One loaded model and its predictor settings; call `predict` for each image.

    `region` says how the network covers an image whose cord mask is known: "whole" (nnU-Net's sliding window
    over the whole image), "exact" (the same tiles, skipping those that miss the cord's bounding box widened by
    `roi_margin_mm`: labels in that box equal the whole-image ones) or "fast" (only that box, in as few tiles as
    `max_tile_stretch` allows). Without a cord mask the whole image is predicted.
    """

    def __init__(self, model: ResolvedModel, *, device: str = "auto", tta: bool = False, step_size: float = 0.5,
                 threads: Optional[int] = None, progress: bool = False, engine: str = "torch",
                 region: str = "whole", roi_margin_mm: float = DEFAULT_ROI_MARGIN_MM,
                 max_tile_stretch: float = MAX_TILE_STRETCH, max_tile_voxels: Optional[int] = None):
        require_nnunet()
        if not 0 < step_size <= 1:
            raise ModelError(f"Step size {step_size} is outside (0, 1].")
        if region not in REGION_MODES:
            raise ModelError(f"Region {region!r} must be one of {', '.join(REGION_MODES)}.")
        if roi_margin_mm < 0:
            raise ModelError(f"Region margin {roi_margin_mm} mm must not be negative.")
        if threads is not None and threads < 1:
            raise ModelError(f"Thread count {threads} must be at least 1.")
        self.model = model
        self.region, self.roi_margin_mm = region, roi_margin_mm
        self.max_tile_stretch, self.max_tile_voxels = max_tile_stretch, max_tile_voxels
        self.device = choose_device(device)
        self.threads = threads or available_cpus()
        self.engine = select_engine(engine, self.device, region)
        self.tta, self.step_size, self.progress = tta, step_size, progress
        self._predictor = self._managers = None

        folder = model.folder
        onnx_paths = facts = None
        if self.engine.startswith("openvino"):
            from sct_rootlets.paths import cache_dir

            onnx_paths = [cached_onnx_path(path, model.file_hashes[path], cache_dir())
                          for path in folder.checkpoints.values()]
            facts = [read_checkpoint_facts(path) for path in onnx_paths]
        if facts and all(facts):  # every fold converted before: neither checkpoint nor torch is needed
            self.parameters = list(onnx_paths)  # what nnU-Net's predictor hands the network for each fold
            self.network = OpenVinoNetwork(onnx_paths, self.threads, self._precision, fold_states=self.parameters)
        else:
            facts = self._load_network(onnx_paths)
        configuration_name = facts[0]["configuration"] or folder.configuration
        try:
            self.plans = NetworkPlans.read(folder.plans, folder.dataset_json, configuration_name)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"Model {folder.trainer_dir} has plans this package cannot read: {exc}") from None
        self.mirror_axes = facts[0]["inference_allowed_mirroring_axes"]
        self.trainer_name = facts[0]["trainer_name"]
        self.options = {"device": str(self.device), "threads": self.threads,
                        **prediction_options(model, tta=tta, step_size=step_size, engine=self.engine)}

    @property
    def _precision(self) -> str:
        return "bf16" if self.engine.endswith("bf16") else "f32"

    def _load_network(self, onnx_paths) -> list:
        """Read the checkpoints and build the network in PyTorch (and, for OpenVINO, export each fold missing from
        the cache, keeping the checkpoint's facts beside it); the checkpoints' facts, per fold."""
        import torch

        torch.set_num_threads(self.threads)
        folder = self.model.folder
        checkpoints = {fold: load_checkpoint(path) for fold, path in folder.checkpoints.items()}
        facts = [checkpoint_facts(checkpoint) for checkpoint in checkpoints.values()]
        configuration_name = facts[0]["configuration"] or folder.configuration
        try:
            plans_manager, configuration_manager, label_manager = self._nnunet_managers(configuration_name)
            network = _build_network(plans_manager, configuration_manager, folder.dataset_json,
                                     label_manager.num_segmentation_heads)
            parameters = [checkpoint["network_weights"] for checkpoint in checkpoints.values()]
            network.load_state_dict(parameters[0])
        except ModelError:
            raise
        except Exception as exc:  # plans, labels and weights that do not fit each other
            raise ModelError(f"Model {folder.trainer_dir} cannot be built from its plans and weights: {exc}") from None
        self.parameters = parameters
        if onnx_paths is None:
            self.network = network.to(self.device.torch())
            return facts
        strides = network_strides(configuration_manager)
        self.network = OpenVinoNetwork(onnx_paths, self.threads, self._precision, fold_states=parameters,
                                       export=lambda fold, path: export_onnx(network, parameters[fold], path, strides))
        for path, fold_facts in zip(onnx_paths, facts):
            if path.is_file():
                write_checkpoint_facts(path, fold_facts)
        return facts

    def _nnunet_managers(self, configuration_name: Optional[str] = None) -> tuple:
        """nnU-Net's plans, configuration and label managers (their module imports torch): made on first need."""
        if self._managers is None:
            from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

            folder = self.model.folder
            plans_manager = PlansManager(folder.plans)
            configuration = plans_manager.get_configuration(configuration_name or self.plans.configuration_name)
            self._managers = (plans_manager, configuration, plans_manager.get_label_manager(folder.dataset_json))
        return self._managers

    @property
    def plans_manager(self):
        return self._nnunet_managers()[0]

    @property
    def configuration_manager(self):
        return self._nnunet_managers()[1]

    @property
    def label_manager(self):
        return self._nnunet_managers()[2]

    @property
    def num_heads(self) -> int:
        """The network's output channels (logits)."""
        return self.plans.num_heads if self.plans.unsupported is None else self.label_manager.num_segmentation_heads

    @property
    def predictor(self):
        """nnU-Net's own predictor on the loaded network (made on first use: whole-image and exact modes)."""
        if self._predictor is None:
            import torch
            from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

            torch.set_num_threads(self.threads)
            # nnU-Net prints a warning about perform_everything_on_device on CPU even when told False.
            with contextlib.redirect_stdout(io.StringIO()):
                predictor = nnUNetPredictor(tile_step_size=self.step_size, use_gaussian=True, use_mirroring=self.tta,
                                            perform_everything_on_device=self.device.type == "cuda",
                                            device=self.device.torch(), verbose=False, verbose_preprocessing=False,
                                            allow_tqdm=self.progress)
            predictor.manual_initialization(self.network, self.plans_manager, self.configuration_manager,
                                            self.parameters, self.model.folder.dataset_json, self.trainer_name,
                                            self.mirror_axes)
            self._predictor = predictor
        return self._predictor

    def uses_region(self, cord: Optional[np.ndarray]) -> bool:
        return self.region != "whole" and cord is not None

    def options_for(self, cord: Optional[np.ndarray]) -> dict:
        """The session's options for one image, saying whether the prediction was restricted to a region."""
        region = self.region if self.uses_region(cord) else "whole"
        return {**self.options, "region": region, "roi_margin_mm": None if region == "whole" else self.roi_margin_mm}

    def _network_view(self, image: InputImage) -> tuple:
        """(image as nnU-Net sees it: float32 (1, z, y, x) in the model's orientation, its spacing, the function
        that maps the image's arrays alike, the reorientation). Refuses (InputImageError) an image whose resampling
        to the model's voxel size cannot fit in memory, before anything is allocated."""
        reorientation = Reorientation.between(image.nifti.affine, sct_orientation_to_axcodes(self.model.orientation))

        def to_network(array):
            return np.ascontiguousarray(reorientation.apply(array).transpose(2, 1, 0))

        check_resampling_memory(image, reorientation.revert_zooms(self.plans.spacing[::-1]), self.num_heads)
        spacing = list(reorientation.apply_to_zooms(image.zooms)[::-1])
        return to_network(image.data)[np.newaxis].astype(np.float32, copy=False), spacing, to_network, reorientation

    def prepare(self, image: InputImage) -> Optional[PreparedImage]:
        """The part of a fast-mode prediction that does not depend on the cord (nnU-Net's preprocessing), to run
        while the cord is computed and hand to `predict`; None where `predict` would not use it."""
        if self.region != "fast" or self.plans.unsupported is not None:
            return None
        network_input, spacing, _, _ = self._network_view(image)
        return PreparedImage(image, *preprocess(network_input, spacing, self.plans, self.threads))

    def predict(self, image: InputImage, cord: Optional[np.ndarray] = None,
                prepared: Optional[PreparedImage] = None) -> np.ndarray:
        """Label map (uint8, the model's label values) on the image's own voxel grid (see `predict_scored`)."""
        return self._predict(image, cord, prepared)

    def predict_scored(self, image: InputImage, cord: Optional[np.ndarray] = None,
                       prepared: Optional[PreparedImage] = None) -> tuple:
        """(label map, the network's `NetworkConfidence` in it): the same labels as `predict`, and how sure the
        network was of them, read from the logits they come from (where the network ran: within the region).

        With a cord mask (on the image grid) and a session `region` other than "whole", the network runs only
        around the mask's bounding box widened by `roi_margin_mm` (see the class); everything outside the box is
        background. The image is normalised as a whole first, as for a whole-image prediction (`prepared`, from
        `prepare(image)`, is that work done beforehand).
        An image whose resampling to the model's voxel size cannot fit in memory is refused (InputImageError)
        before anything is allocated.
        """
        measured = []
        labels = self._predict(image, cord, prepared, on_logits=lambda logits: measured.append(
            network_confidence(logits)))
        return labels, measured[0] if measured else NetworkConfidence(None)  # the network never ran

    def _predict(self, image: InputImage, cord: Optional[np.ndarray] = None,
                 prepared: Optional[PreparedImage] = None, on_logits=None) -> np.ndarray:
        """`predict_scored`'s labels, handing the logits they come from to `on_logits` (if given) before they are
        exported."""
        network_input, spacing, to_network, reorientation = self._network_view(image)
        on_logits = on_logits or (lambda logits: None)
        if not self.uses_region(cord):
            segmentation = self._predict_whole(network_input, spacing, on_logits)
        elif self.region == "exact":
            region = to_network(cord) > 0
            segmentation = np.zeros(region.shape, np.uint8)
            box = region_box(region, spacing, self.roi_margin_mm)
            segmentation[box] = self._predict_exact(network_input, spacing, region, on_logits)[box]
        else:
            if prepared is not None and prepared.image is not image:
                raise ValueError("The prepared image is not the image to predict.")
            segmentation = self._predict_in_region(network_input, spacing, to_network(cord) > 0, prepared, on_logits)
        labels = reorientation.revert(np.asarray(segmentation).transpose(2, 1, 0))
        return np.ascontiguousarray(labels, dtype=np.uint8)

    def _predict_whole(self, network_input, spacing, on_logits):
        """nnU-Net's whole-image prediction, step by step as its predictor's `predict_single_npy_array` takes
        them, with the logits seen on the way."""
        data, properties, _ = self._preprocess(network_input, spacing)
        logits = self.predictor.predict_logits_from_preprocessed_data(data).cpu()
        del data
        on_logits(logits.numpy())
        return self._segmentation(logits, properties)

    def _preprocess(self, network_input, spacing, region: Optional[np.ndarray] = None) -> tuple:
        """nnU-Net's preprocessing of the whole image, and the region's widened box in its voxels (None without a
        region, or where the region lies in what was cropped away)."""
        from nnunetv2.inference.data_iterators import PreprocessAdapterFromNpy

        preprocessed = next(PreprocessAdapterFromNpy([network_input], [None], [{"spacing": spacing}], [None],
                                                     self.plans_manager, self.model.folder.dataset_json,
                                                     self.configuration_manager, num_threads_in_multithreaded=1))
        data, properties = preprocessed["data"], preprocessed["data_properties"]
        if region is None:
            return data, properties, None
        box = self._box_in_preprocessed(region, spacing, self.roi_margin_mm, properties, data.shape[1:])
        return data, properties, None if any(part.stop <= part.start for part in box) else box

    def _segmentation(self, logits, properties):
        from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape

        return convert_predicted_logits_to_segmentation_with_correct_shape(
            logits, self.plans_manager, self.configuration_manager, self.label_manager, properties)

    def _predict_exact(self, network_input, spacing, region, on_logits):
        """nnU-Net's own tile grid, running only the tiles that overlap the region's box (widened by two voxels,
        so that resampling back to the input grid interpolates whole-image logits at the box's edge). Inside the
        box each voxel gets the same tiles, added in the same order, as in a whole-image prediction."""
        import torch

        predictor = self.predictor
        data, properties, box = self._preprocess(network_input, spacing, region)
        if box is None:  # the region lies where the image is all zeros
            return np.zeros(region.shape, np.uint8)
        shape = np.array(data.shape[1:])
        wanted = _widened(box, 2, shape)
        padding = (np.maximum(shape, predictor.configuration_manager.patch_size) - shape) // 2  # as nnU-Net pads
        every_tile = predictor._internal_get_sliding_window_slicers

        def overlapping_tiles(image_size):
            return [tile for tile in every_tile(image_size)
                    if all(part.start < want.stop + pad and part.stop > want.start + pad
                           for part, want, pad in zip(tile[1:], wanted, padding))]

        predictor._internal_get_sliding_window_slicers = overlapping_tiles
        try:
            logits = predictor.predict_logits_from_preprocessed_data(data).cpu()
        finally:
            del predictor._internal_get_sliding_window_slicers  # back to the class's method
        background = torch.full((logits.shape[0], 1, 1, 1), OTHER_LOGIT, dtype=logits.dtype)
        background[0] = BACKGROUND_LOGIT
        logits = torch.where(torch.isnan(logits[:1]), background, logits)  # no tile ran there: 0/0
        del data
        on_logits(logits[(slice(None), *box)].numpy())
        return self._segmentation(logits, properties)

    def _predict_in_region(self, network_input, spacing, region, prepared: Optional[PreparedImage] = None,
                           on_logits=lambda logits: None):
        """The fast mode: only the region's widened box, in as few tiles as the settings allow. Preprocessing and
        export are `preprocessing`'s (nnU-Net's steps without torch) where the plans allow. Unless the image was
        prepared, OpenVINO compiles the network for the tile while the image is normalised and resampled."""
        if self.plans.unsupported is not None:
            logger.debug("nnU-Net's own preprocessing and export: %s", self.plans.unsupported)
            return self._predict_in_region_nnunet(network_input, spacing, region, on_logits)
        if prepared is None:
            cropped = crop_to_nonzero(network_input, spacing, self.plans)
            properties, preprocessed_shape = cropped.properties, tuple(cropped.new_shape)
        else:
            properties, preprocessed_shape = prepared.properties, prepared.data.shape[1:]
        box = self._box_in_preprocessed(region, spacing, self.roi_margin_mm, properties, preprocessed_shape)
        if any(part.stop <= part.start for part in box):  # the region lies where the image is all zeros
            return np.zeros(region.shape, np.uint8)
        tile = tile_shape(self.plans.patch_size, [part.stop - part.start for part in box], self.plans.strides,
                          self.max_tile_stretch, self.max_tile_voxels)
        if prepared is not None:
            data = prepared.data
        elif isinstance(self.network, OpenVinoNetwork):
            with concurrent.futures.ThreadPoolExecutor(max_workers=1) as compiler:  # compiling releases the GIL
                compiled = compiler.submit(self.network.compile, (1, network_input.shape[0], *tile))
                data, properties = normalise_and_resample(cropped, self.plans, self.threads)
                compiled.result()
        else:
            data, properties = normalise_and_resample(cropped, self.plans, self.threads)
        crop = data[(slice(None), *box)]
        if isinstance(self.network, OpenVinoNetwork):
            region_logits = self._tiled_logits_numpy(crop, tile)
        else:
            import torch

            region_logits = self._tiled_logits(torch.from_numpy(np.ascontiguousarray(crop)), tile).numpy()
        del crop
        on_logits(region_logits)
        return labels_from_logits(region_logits, box, data.shape[1:], properties, self.plans)

    def _predict_in_region_nnunet(self, network_input, spacing, region, on_logits):
        """The fast mode with nnU-Net's own preprocessing and export (plans that `preprocessing` does not cover)."""
        import torch

        data, properties, box = self._preprocess(network_input, spacing, region)
        if box is None:  # the region lies where the image is all zeros
            return np.zeros(region.shape, np.uint8)
        crop = data[(slice(None), *box)]
        tile = tile_shape(self.configuration_manager.patch_size, crop.shape[1:],
                          network_strides(self.configuration_manager), self.max_tile_stretch, self.max_tile_voxels)
        if isinstance(self.network, OpenVinoNetwork):
            region_logits = torch.from_numpy(self._tiled_logits_numpy(crop.numpy(), tile))
        else:
            region_logits = self._tiled_logits(crop, tile)
        on_logits(region_logits.numpy())
        if tuple(data.shape[1:]) == tuple(properties["shape_after_cropping_and_before_resampling"]):
            return self._segmentation_in_box(region_logits, box, data.shape[1:], properties)
        # Half precision, as nnU-Net keeps its logits; background wherever the network did not run.
        logits = torch.full((self.label_manager.num_segmentation_heads, *data.shape[1:]), OTHER_LOGIT,
                            dtype=torch.half)
        logits[0] = BACKGROUND_LOGIT
        logits[(slice(None), *box)] = region_logits
        del data, crop, region_logits
        return self._segmentation(logits, properties)

    def _segmentation_in_box(self, region_logits, box, shape, properties) -> np.ndarray:
        """Labels when the image needed no resampling: the box's labels from its own logits, background elsewhere
        (what full-size logits, background outside the box, would give), without full-size logits."""
        from acvl_utils.cropping_and_padding.bounding_boxes import insert_crop_into_image

        cropped = np.zeros(shape, np.uint8)
        cropped[box] = np.asarray(self.label_manager.convert_logits_to_segmentation(region_logits))
        labels = insert_crop_into_image(np.zeros(properties["shape_before_cropping"], np.uint8), cropped,
                                        properties["bbox_used_for_cropping"])
        return np.asarray(labels).transpose(self.plans_manager.transpose_backward)

    def _tiled_logits_numpy(self, data: np.ndarray, tile) -> np.ndarray:
        """`_tiled_logits` for the OpenVINO engine, in numpy: the same half-precision sums, roundings and fold
        weights (numpy's float16 arithmetic rounds as torch's does on a CPU: each operation in float32, rounded to
        the nearest half)."""
        padded, revert_padding = pad_to_tile(data, tile)
        steps = sliding_window_steps(padded.shape[1:], tile, self.step_size)
        tiles = [tuple(slice(start, start + size) for start, size in zip(corner, tile))
                 for corner in itertools.product(*steps)]
        gaussian = 1 if len(tiles) == 1 else gaussian_weights(tuple(tile))
        times_added, divisor = predictor_fold_weights(len(self.parameters))
        mean = None
        for fold, times in enumerate(times_added):
            self.network.select(fold)
            if len(tiles) == 1:  # the sums below reduce to rounding the tile's logits to half precision
                logits = self._openvino_with_mirroring(np.ascontiguousarray(padded[None]))[0].astype(np.float16)
            else:
                logits = np.zeros((self.num_heads, *padded.shape[1:]), np.float16)
                weights = np.zeros(padded.shape[1:], np.float16)
                for part in tiles:
                    window = np.ascontiguousarray(padded[(slice(None), *part)][None])
                    logits[(slice(None), *part)] += self._openvino_with_mirroring(window)[0] * gaussian
                    weights[part] += gaussian
                np.divide(logits, weights, out=logits)
            for _ in range(times):
                mean = logits.copy() if mean is None else np.add(mean, logits, out=mean)
        if divisor > 1:
            np.divide(mean, np.float16(divisor), out=mean)
        return np.ascontiguousarray(mean[(slice(None), *revert_padding[1:])])

    def _openvino_with_mirroring(self, window: np.ndarray) -> np.ndarray:
        """`_network_with_mirroring` in numpy."""
        prediction = self.network.logits(window)
        if not (self.tta and self.mirror_axes):
            return prediction
        flips = mirror_flips(self.mirror_axes)
        for flip in flips:
            prediction += np.flip(self.network.logits(np.ascontiguousarray(np.flip(window, flip))), flip)
        return prediction / (len(flips) + 1)

    def _tiled_logits(self, data, tile):
        """Logits of a preprocessed array (c, z, y, x) in tiles of shape `tile`, as nnU-Net's sliding window
        computes them: half-precision sums of Gaussian-weighted tile logits over the step grid, then combined over
        folds as the installed nnU-Net's predictor combines them (`predictor_fold_weights`)."""
        import torch
        from acvl_utils.cropping_and_padding.padding import pad_nd_image
        from nnunetv2.inference.sliding_window_prediction import compute_gaussian, compute_steps_for_sliding_window

        padded, revert_padding = pad_nd_image(data, tile, "constant", {"value": 0}, True, None)
        steps = compute_steps_for_sliding_window(padded.shape[1:], tile, self.step_size)
        tiles = [tuple(slice(start, start + size) for start, size in zip(corner, tile))
                 for corner in itertools.product(*steps)]
        # One tile needs no weighting (it would divide out); several are weighted as nnU-Net weights them.
        gaussian = 1 if len(tiles) == 1 else compute_gaussian(tuple(tile), sigma_scale=1. / 8, value_scaling_factor=10,
                                                              device=self.device.torch())
        heads = self.num_heads
        times_added, divisor = predictor_fold_weights(len(self.parameters))
        mean = None
        with torch.inference_mode():
            for parameters, times in zip(self.parameters, times_added):
                self.network.load_state_dict(parameters)
                if hasattr(self.network, "eval"):
                    self.network.eval()
                logits = torch.zeros((heads, *padded.shape[1:]), dtype=torch.half, device=self.device.torch())
                weights = torch.zeros(padded.shape[1:], dtype=torch.half, device=self.device.torch())
                for part in tiles:
                    window = padded[(slice(None), *part)][None].to(self.device.torch())
                    logits[(slice(None), *part)] += self._network_with_mirroring(window)[0] * gaussian
                    weights[part] += gaussian
                torch.div(logits, weights, out=logits)
                logits = logits.cpu()
                for _ in range(times):  # in the predictor's order: the same half-precision roundings
                    mean = logits.clone() if mean is None else mean.add_(logits)
            if divisor > 1:
                mean /= divisor
        return mean[(slice(None), *revert_padding[1:])].clone()  # a normal tensor, outside inference mode

    def _network_with_mirroring(self, window):
        """The network's logits, averaged over the model's mirror axes with test-time augmentation."""
        prediction = self.network(window)
        if not (self.tta and self.mirror_axes):
            return prediction
        import torch

        flips = mirror_flips(self.mirror_axes)
        for flip in flips:
            prediction += torch.flip(self.network(torch.flip(window, flip)), flip)
        return prediction / (len(flips) + 1)

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
