"""A CPU-sized training loop for images whose appearance is randomised at the source (synthetic volumes).

nnU-Net's trainer is built for 250k GPU iterations with heavy on-the-fly spatial and intensity augmentation; on two
CPU cores most of an iteration goes to that augmentation and the schedule cannot be afforded. Synthetic volumes
are already deformed and re-rendered one by one, so this loop keeps what defines an nnU-Net model and changes only
what costs time:
- kept: the network built from the plans, nnU-Net's preprocessed cases and subject-wise splits, its loss (soft
  Dice + cross-entropy with deep supervision, same weights), and its results folder and checkpoint format (so
  `export`, `sct_deepseg_rootlets` and stock nnU-Net load the model like any other);
- changed: patches are cut straight from the preprocessed arrays (a share centred on a voxel of a randomly chosen
  label, so every level is seen equally often, the rest anywhere), mirrored only along the given axes, AdamW with
  warm-up and cosine decay instead of SGD with poly decay, optionally bfloat16 autocast (about twice as fast on
  CPUs with AVX512-BF16/AMX).
An "epoch" is `iterations` steps followed by a validation pseudo-Dice on fixed patches of the validation cases;
checkpoint_latest.pth is written every epoch (so a run can continue), checkpoint_best.pth when the validation
Dice improves, checkpoint_final.pth at the end.
"""

import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from sct_rootlets.inference.nnunet import require_nnunet
from sct_rootlets.io.atomic import atomic_paths
from sct_rootlets.qc.metrics import dice
from sct_rootlets.training.train import CONFIGURATION, TRAINER_FOLDER, TrainingError, check_sampling, read_plans

#: The trainer class whose network builder (plans -> network) the checkpoints rely on; nnU-Net looks it up by name.
NNUNET_TRAINER_NAME = "nnUNetTrainer"


@dataclass(frozen=True)
class LeanSchedule:
    epochs: int = 20
    iterations: int = 100
    val_patches: int = 16
    learning_rate: float = 2e-3
    weight_decay: float = 3e-5
    warmup_iterations: int = 50
    foreground_share: float = 0.67
    mirror_axes: tuple = (2,)
    bfloat16: bool = False
    seed: int = 0

    def learning_rate_at(self, step: int) -> float:
        total = self.epochs * self.iterations
        if step < self.warmup_iterations:
            return self.learning_rate * (step + 1) / self.warmup_iterations
        progress = (step - self.warmup_iterations) / max(1, total - self.warmup_iterations)
        return self.learning_rate * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


class PatchSampler:
    """Patches (and labels) from cases held in memory; `locations` are nnU-Net's sampled voxels of each label."""

    def __init__(self, cases: Sequence[tuple], patch_size: Sequence[int], foreground_share: float,
                 mirror_axes: Sequence[int]):
        self.cases = cases
        self.patch = np.array(patch_size)
        self.foreground_share = foreground_share
        self.mirror_axes = tuple(mirror_axes)

    def _corner(self, rng, shape: np.ndarray, locations: dict, foreground: bool) -> np.ndarray:
        labelled = [label for label, voxels in locations.items() if len(voxels)]
        if foreground and labelled:
            voxels = locations[labelled[rng.integers(len(labelled))]]
            centre = np.asarray(voxels[rng.integers(len(voxels))])[1:]
            centre = centre + rng.integers(-(self.patch // 4), self.patch // 4 + 1)
        else:
            centre = rng.integers(0, shape)
        return np.clip(centre - self.patch // 2, np.minimum(0, shape - self.patch), np.maximum(0, shape - self.patch))

    def _cut(self, array: np.ndarray, corner: np.ndarray) -> np.ndarray:
        """array[:, corner:corner+patch], zero-padded where the patch leaves the image."""
        shape = np.array(array.shape[1:])
        low, high = np.maximum(corner, 0), np.minimum(corner + self.patch, shape)
        piece = array[(slice(None), *(slice(a, b) for a, b in zip(low, high)))]
        before, after = low - corner, corner + self.patch - high
        return np.pad(piece, [(0, 0), *zip(before, after)])

    def sample(self, rng, batch_size: int, foreground: Optional[bool] = None) -> tuple:
        images, labels = [], []
        for _ in range(batch_size):
            data, seg, locations = self.cases[rng.integers(len(self.cases))]
            wants_foreground = rng.random() < self.foreground_share if foreground is None else foreground
            corner = self._corner(rng, np.array(data.shape[1:]), locations, wants_foreground)
            image, label = self._cut(data, corner), self._cut(seg, corner)
            for axis in self.mirror_axes:
                if rng.random() < 0.5:
                    image, label = np.flip(image, axis + 1), np.flip(label, axis + 1)
            images.append(image)
            labels.append(label)
        return np.stack(images).astype(np.float32), np.stack(labels).astype(np.int16)


def _load_cases(folder: Path, identifiers: Sequence[str]) -> list:
    """(data, seg, label locations) per case, decompressed into memory once."""
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    dataset = infer_dataset_class(str(folder))(str(folder), list(identifiers))
    cases = []
    for identifier in identifiers:
        data, seg, _, properties = dataset.load_case(identifier)
        seg = np.asarray(seg[:])
        seg[seg < 0] = 0  # nnU-Net marks voxels outside the cropped foreground as -1
        cases.append((np.asarray(data[:], np.float32), seg.astype(np.int16), properties["class_locations"]))
    return cases


def _split(preprocessed: Path, identifiers: Sequence[str], fold) -> tuple:
    """(training, validation) cases of a fold; fold "all" trains and validates on every case, as nnU-Net's."""
    if fold == "all":
        return list(identifiers), list(identifiers)
    splits_file = preprocessed / "splits_final.json"
    if splits_file.is_file():
        splits = json.loads(splits_file.read_text())
        if not 0 <= fold < len(splits):
            raise TrainingError(f"Fold {fold} does not exist: {splits_file} has {len(splits)} folds.")
        return splits[fold]["train"], splits[fold]["val"]
    if len(identifiers) < 2:
        raise TrainingError(f"{preprocessed} holds {len(identifiers)} case(s); training needs at least two.")
    shuffled = list(np.random.default_rng(12345).permutation(sorted(identifiers)))
    cut = max(1, len(shuffled) // 5)
    return shuffled[cut:], shuffled[:cut]


class _DeepSupervisionTargets:
    """The label map at every output resolution of the network (nearest neighbour, as nnU-Net downsamples)."""

    def __init__(self, pool_op_kernel_sizes):
        self.scales = list(1 / np.cumprod(np.vstack(pool_op_kernel_sizes), axis=0))[:-1]

    def __call__(self, seg):
        import torch.nn.functional as F

        seg = seg.float()
        return [seg if np.all(scale == 1) else F.interpolate(
            seg, size=[int(round(s * f)) for s, f in zip(seg.shape[2:], scale)], mode="nearest-exact")
            for scale in self.scales]


def _loss(configuration_manager, n_outputs: int):
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    loss = DC_and_CE_loss({"batch_dice": configuration_manager.batch_dice, "smooth": 1e-5, "do_bg": False,
                           "ddp": False}, {}, weight_ce=1, weight_dice=1, ignore_label=None,
                          dice_class=MemoryEfficientSoftDiceLoss)
    weights = np.array([1 / 2 ** i for i in range(n_outputs)])
    weights[-1] = 0
    return DeepSupervisionWrapper(loss, weights / weights.sum())


def _dice(prediction: np.ndarray, truth: np.ndarray, labels: Sequence[int]) -> tuple:
    """(binary Dice of all labels together, mean Dice over the labels present in truth or prediction)."""
    present = [label for label in labels if np.any(truth == label) or np.any(prediction == label)]
    per_label = [dice(truth == label, prediction == label) for label in present]
    return dice(truth > 0, prediction > 0), float(np.mean(per_label)) if per_label else 0.0


def train_lean(work: Path, dataset_id: int, *, fold=0, schedule: LeanSchedule = LeanSchedule(),
               device: str = "auto", resume: bool = False, pretrained: Optional[Path] = None,
               log: Callable[[str], None] = print) -> Path:
    """Train one fold with the lean loop; returns the fold folder (checkpoint_final.pth and a training log).
    `pretrained`: a checkpoint whose network weights start the training (same architecture; e.g. a model trained
    on rendered volumes, fine-tuned on real anatomy), as nnU-Net's -pretrained_weights."""
    require_nnunet()
    import torch

    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from sct_rootlets.inference.checkpoint import load_checkpoint
    from sct_rootlets.inference.session import available_cpus, select_device

    check_sampling(schedule.foreground_share, schedule.mirror_axes)
    preprocessed, plans, dataset_json = read_plans(work, dataset_id)
    plans_manager = PlansManager(plans)
    configuration = plans_manager.get_configuration(CONFIGURATION)
    data_folder = preprocessed / configuration.data_identifier
    identifiers = sorted(p.name[:-len(".pkl")] for p in data_folder.glob("*.pkl"))
    train_ids, val_ids = _split(preprocessed, identifiers, fold)

    results = Path(work) / "nnUNet_results" / preprocessed.name / TRAINER_FOLDER
    output = results / f"fold_{fold}"
    output.mkdir(parents=True, exist_ok=True)
    for name, source in (("plans.json", "nnUNetPlans.json"), ("dataset.json", "dataset.json"),
                         ("dataset_fingerprint.json", "dataset_fingerprint.json")):
        if (preprocessed / source).is_file():
            shutil.copyfile(preprocessed / source, results / name)
    log_file = output / "training_log.txt"

    def report(message: str) -> None:
        with log_file.open("a") as handle:
            handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
        log(message)

    device = select_device(device)
    if device.type == "cpu":
        torch.set_num_threads(available_cpus())
    labels = sorted(int(v) for k, v in dataset_json["labels"].items() if k != "background")
    num_classes = max(labels) + 1
    torch.manual_seed(schedule.seed)
    network = get_network_from_plans(configuration.network_arch_class_name, configuration.network_arch_init_kwargs,
                                     configuration.network_arch_init_kwargs_req_import,
                                     determine_num_input_channels(plans_manager, configuration, dataset_json),
                                     num_classes, allow_init=True, deep_supervision=True).to(device)
    network = network.to(memory_format=torch.channels_last_3d)
    optimizer = torch.optim.AdamW(network.parameters(), lr=schedule.learning_rate,
                                  weight_decay=schedule.weight_decay)
    start_epoch, best_dice = 0, -1.0
    latest = output / "checkpoint_latest.pth"
    if pretrained is not None and not resume:
        weights = load_checkpoint(pretrained)["network_weights"]
        try:
            network.load_state_dict(weights)
        except RuntimeError as error:
            raise TrainingError(f"{pretrained} is not a network of this dataset's plans: "
                                f"{str(error).splitlines()[0]}") from error
        report(f"starting from the weights of {pretrained}")
    if resume:
        if not latest.is_file():
            raise TrainingError(f"{latest} does not exist; nothing to continue.")
        state = load_checkpoint(latest)
        network.load_state_dict(state["network_weights"])
        optimizer.load_state_dict(state["optimizer_state"])
        start_epoch, best_dice = state["current_epoch"], state.get("best_val_dice", -1.0)
        report(f"continuing after epoch {start_epoch}")

    report(f"lean training: {len(train_ids)} training and {len(val_ids)} validation cases, patch "
           f"{configuration.patch_size}, batch {configuration.batch_size}, {schedule}")
    sampler = PatchSampler(_load_cases(data_folder, train_ids), configuration.patch_size,
                           schedule.foreground_share, schedule.mirror_axes)
    val_sampler = PatchSampler(_load_cases(data_folder, val_ids), configuration.patch_size, 1.0, ())
    val_batches = [val_sampler.sample(np.random.default_rng(10_000 + i), 1, foreground=True)
                   for i in range(schedule.val_patches)]
    targets = _DeepSupervisionTargets(configuration.pool_op_kernel_sizes)
    loss_function = _loss(configuration, len(targets.scales))
    autocast = dict(device_type=device.type, dtype=torch.bfloat16, enabled=schedule.bfloat16)

    def as_tensor(array):
        return torch.from_numpy(array).to(device).to(memory_format=torch.channels_last_3d)

    def checkpoint(epoch: int, with_optimizer: bool) -> dict:
        content = {"network_weights": network.state_dict(), "current_epoch": epoch,
                   "init_args": {"plans": plans, "configuration": CONFIGURATION, "fold": fold,
                                 "dataset_json": dataset_json, "device": str(device)},
                   "trainer_name": NNUNET_TRAINER_NAME,
                   "inference_allowed_mirroring_axes": tuple(schedule.mirror_axes), "best_val_dice": best_dice}
        if with_optimizer:
            content["optimizer_state"] = optimizer.state_dict()
        return content

    for epoch in range(start_epoch, schedule.epochs):
        rng = np.random.default_rng([schedule.seed, epoch])
        network.train()
        started, losses = time.time(), []
        for step in range(epoch * schedule.iterations, (epoch + 1) * schedule.iterations):
            for group in optimizer.param_groups:
                group["lr"] = schedule.learning_rate_at(step)
            images, segs = sampler.sample(rng, configuration.batch_size)
            with torch.autocast(**autocast):
                outputs = network(as_tensor(images))
            loss = loss_function([o.float() for o in outputs], targets(torch.from_numpy(segs).to(device)))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(network.parameters(), 12)
            optimizer.step()
            losses.append(loss.item())
        binary, per_level = _validate(network, val_batches, labels, as_tensor, autocast)
        report(f"epoch {epoch + 1}/{schedule.epochs}: loss {np.mean(losses):.4f}, validation Dice binary "
               f"{binary:.3f} per level {per_level:.3f}, lr {schedule.learning_rate_at(step):.2e}, "
               f"{(time.time() - started) / schedule.iterations:.2f} s/iteration")
        if per_level > best_dice:
            best_dice = per_level
            torch.save(checkpoint(epoch + 1, with_optimizer=False), output / "checkpoint_best.pth")
        with atomic_paths([latest], overwrite=True) as (partial,):
            torch.save(checkpoint(epoch + 1, with_optimizer=True), partial)
    torch.save(checkpoint(schedule.epochs, with_optimizer=False), output / "checkpoint_final.pth")
    report(f"done: {output / 'checkpoint_final.pth'} (best validation Dice per level {best_dice:.3f})")
    return output


def _validate(network, batches, labels, as_tensor, autocast) -> tuple:
    import torch

    network.eval()
    binary, per_level = [], []
    with torch.no_grad(), torch.autocast(**autocast):
        for image, seg in batches:
            prediction = network(as_tensor(image))[0].float().argmax(1).cpu().numpy()
            scores = _dice(prediction, seg[:, 0], labels)
            binary.append(scores[0])
            per_level.append(scores[1])
    return float(np.nanmean(binary)), float(np.nanmean(per_level))
