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

from sct_rootlets.errors import ModelError
from sct_rootlets.image import InputImage, Reorientation, sct_orientation_to_axcodes
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


def prediction_options(model: ResolvedModel, *, tta: bool, step_size: float) -> dict:
    """The options that decide the labels (unlike device or threads): recorded in sidecars, compared by -resume."""
    return {"tta": tta, "step_size": step_size, "folds": list(model.folder.checkpoints),
            "checkpoints": sorted({path.name for path in model.folder.checkpoints.values()}),
            "orientation": model.orientation}


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


class InferenceSession:
    """One loaded model and its predictor settings; call `predict` for each image."""

    def __init__(self, model: ResolvedModel, *, device: str = "auto", tta: bool = False, step_size: float = 0.5,
                 threads: Optional[int] = None, progress: bool = False):
        import torch
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        if not 0 < step_size <= 1:
            raise ModelError(f"Step size {step_size} is outside (0, 1].")
        if threads is not None and threads < 1:
            raise ModelError(f"Thread count {threads} must be at least 1.")
        self.model = model
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
        self.predictor.manual_initialization(network.to(self.device), plans_manager, configuration_manager,
                                             parameters, folder.dataset_json, first.get("trainer_name", ""),
                                             first.get("inference_allowed_mirroring_axes"))
        self.options = {"device": str(self.device), "threads": self.threads,
                        **prediction_options(model, tta=tta, step_size=step_size)}

    def predict(self, image: InputImage) -> np.ndarray:
        """Label map (uint8, the model's label values) on the image's own voxel grid."""
        reorientation = Reorientation.between(image.nifti.affine, sct_orientation_to_axcodes(self.model.orientation))
        data = reorientation.apply(image.data)
        spacing_xyz = reorientation.apply_to_zooms(image.zooms)
        network_input = np.ascontiguousarray(data.transpose(2, 1, 0)[np.newaxis], dtype=np.float32)
        segmentation = self.predictor.predict_single_npy_array(network_input, {"spacing": list(spacing_xyz[::-1])},
                                                               None, None, False)
        labels = reorientation.revert(np.asarray(segmentation).transpose(2, 1, 0))
        return np.ascontiguousarray(labels, dtype=np.uint8)
