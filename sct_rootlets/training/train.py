"""nnU-Net v2 planning, training and export of a model in the published zip layout.

A work folder holds nnU-Net's three folders (`nnUNet_raw`, `nnUNet_preprocessed`, `nnUNet_results`); nnU-Net
reads their locations from environment variables at call time (stock 2.8; SCT's fork 2.6.2 reads them once, at
import: see `_set_imported_nnunet_folders`), so they are set only around its calls.
Training uses nnU-Net's own `nnUNetTrainer` with a chosen number of epochs and iterations (its default schedule
is 1000 x 250 iterations, for a GPU); the checkpoint names that trainer, so the same inference path loads it.
"""

import contextlib
import json
import os
import shutil
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple

from sct_rootlets.store.download import sha256_of_file
from sct_rootlets.errors import RootletsError
from sct_rootlets.anatomy.level_names import spinal_level_name
from sct_rootlets.inference.nnunet import require_nnunet
from sct_rootlets.io.bids import channel_contrasts

CONFIGURATION = "3d_fullres"
TRAINER_FOLDER = f"nnUNetTrainer__nnUNetPlans__{CONFIGURATION}"
#: The files a model needs at inference; training logs and plots stay out of the archive.
EXPORTED_FILES = ("dataset.json", "plans.json", "dataset_fingerprint.json")
#: Checkpoint entries inference reads; the optimizer state (as large as the weights) and logs are dropped.
INFERENCE_CHECKPOINT_KEYS = ("network_weights", "init_args", "trainer_name", "inference_allowed_mirroring_axes",
                             "current_epoch")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class TrainingError(RootletsError):
    """Planning, training or export cannot proceed."""


@contextlib.contextmanager
def nnunet_environment(work: Path, data_workers: int):
    """Point nnU-Net at the work folder (and set its augmentation workers) for the duration of a call."""
    values = {"nnUNet_raw": str(Path(work) / "nnUNet_raw"),
              "nnUNet_preprocessed": str(Path(work) / "nnUNet_preprocessed"),
              "nnUNet_results": str(Path(work) / "nnUNet_results"), "nnUNet_n_proc_DA": str(data_workers)}
    previous = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    _set_imported_nnunet_folders(values)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _set_imported_nnunet_folders(previous)


def _set_imported_nnunet_folders(values: dict) -> None:
    """SCT's fork nnunetv2-neuropoly (2.6.2, like older stock releases) copies the three folder variables into
    module globals (plain strings, or None when unset) when `nnunetv2.paths` is first imported, and every module
    that imports them keeps its own copy: set those copies in the nnU-Net modules already imported. Stock 2.8 holds
    objects there that read the environment at each use: left alone."""
    folders = {key: value for key, value in values.items() if key in ("nnUNet_raw", "nnUNet_preprocessed",
                                                                      "nnUNet_results")}
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "nnunetv2" or name.startswith("nnunetv2.")):
            continue
        for key, value in folders.items():
            if key in vars(module) and (vars(module)[key] is None or isinstance(vars(module)[key], str)):
                setattr(module, key, value)


def dataset_folder(root: Path, dataset_id: int) -> Path:
    matches = sorted(Path(root).glob(f"Dataset{dataset_id:03d}_*"))
    if len(matches) != 1:
        raise TrainingError(f"{root} holds {len(matches)} folders for dataset {dataset_id}; expected one.")
    return matches[0]


@dataclass(frozen=True)
class NetworkSize:
    """A 3d_fullres network smaller than nnU-Net's GPU-sized default (for CPU training or a shipped model).

    `patch_size` is in nnU-Net's axis order (as written in plans.json). Strides follow nnU-Net's rule: an axis is
    halved at each stage while it stays at least 4 voxels, for at most `max_stages` stages.
    """
    patch_size: Tuple[int, int, int]
    base_features: int = 32
    max_features: int = 320
    batch_size: int = 2
    max_stages: int = 6

    def strides(self) -> list:
        size, strides = list(self.patch_size), [[1, 1, 1]]
        while len(strides) < self.max_stages:
            stride = [2 if s % 2 == 0 and s // 2 >= 4 else 1 for s in size]
            if stride == [1, 1, 1]:
                break
            strides.append(stride)
            size = [s // f for s, f in zip(size, stride)]
        return strides

    def apply(self, configuration: dict) -> None:
        """Rewrite a 3d_fullres configuration of plans.json in place."""
        if len(self.patch_size) != 3 or min(self.patch_size) < 8:
            raise TrainingError(f"patch size {list(self.patch_size)} must be three sizes of at least 8 voxels.")
        strides = self.strides()
        n_stages = len(strides)
        kwargs = configuration["architecture"]["arch_kwargs"]
        kwargs.update(n_stages=n_stages, strides=strides, kernel_sizes=[[3, 3, 3]] * n_stages,
                      features_per_stage=[min(self.base_features * 2 ** i, self.max_features)
                                          for i in range(n_stages)],
                      n_conv_per_stage=[2] * n_stages, n_conv_per_stage_decoder=[2] * (n_stages - 1))
        configuration["patch_size"] = list(self.patch_size)
        configuration["batch_size"] = self.batch_size


def plan_and_preprocess(work: Path, dataset_id: int, processes: int = 1,
                        network: Optional[NetworkSize] = None, spacing_mm: Optional[float] = None) -> Path:
    """nnU-Net's fingerprint, default plans and 3d_fullres preprocessing; returns the preprocessed folder.

    With `network`, the planned 3d_fullres network is replaced by that size; with `spacing_mm`, cases are
    resampled to that isotropic voxel size instead of nnU-Net's median spacing (preprocessing stays nnU-Net's).
    """
    require_nnunet()
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (extract_fingerprints, plan_experiments,
                                                                       preprocess)

    raw = dataset_folder(Path(work) / "nnUNet_raw", dataset_id)
    with nnunet_environment(work, data_workers=max(1, processes)):
        extract_fingerprints([dataset_id], check_dataset_integrity=True, num_processes=processes)
        plan_experiments([dataset_id])
        if network is not None or spacing_mm is not None:
            if spacing_mm is not None and not 0.1 <= spacing_mm <= 10:
                raise TrainingError(f"Spacing {spacing_mm} mm is outside 0.1..10 mm.")
            plans_file = dataset_folder(Path(work) / "nnUNet_preprocessed", dataset_id) / "nnUNetPlans.json"
            plans = json.loads(plans_file.read_text())
            configuration = plans["configurations"][CONFIGURATION]
            if network is not None:
                network.apply(configuration)
            if spacing_mm is not None:
                configuration["spacing"] = [spacing_mm] * 3
            plans_file.write_text(json.dumps(plans, indent=2))
        preprocess([dataset_id], configurations=(CONFIGURATION,), num_processes=(processes,))
    preprocessed = dataset_folder(Path(work) / "nnUNet_preprocessed", dataset_id)
    if (raw / "splits_final.json").is_file():  # our subject-wise folds replace nnU-Net's image-wise ones
        shutil.copyfile(raw / "splits_final.json", preprocessed / "splits_final.json")
    return preprocessed


def check_sampling(foreground_share: Optional[float], mirror_axes: Optional[Sequence[int]]) -> None:
    """Refuse a foreground share outside 0..1 or mirror axes other than 0, 1, 2 (None: the trainer's default)."""
    if foreground_share is not None and not 0 <= foreground_share <= 1:
        raise TrainingError(f"The foreground share {foreground_share} is outside 0..1.")
    if mirror_axes is not None and not set(mirror_axes) <= {0, 1, 2}:
        raise TrainingError(f"Mirror axes {list(mirror_axes)} must be among 0, 1, 2.")


def read_plans(work: Path, dataset_id: int) -> tuple:
    """(preprocessed folder, plans, dataset.json) of a planned dataset."""
    preprocessed = dataset_folder(Path(work) / "nnUNet_preprocessed", dataset_id)
    if not (preprocessed / "nnUNetPlans.json").is_file():
        raise TrainingError(f"{preprocessed} has no plans; run the plan step first.")
    return (preprocessed, json.loads((preprocessed / "nnUNetPlans.json").read_text()),
            json.loads((preprocessed / "dataset.json").read_text()))


def train(work: Path, dataset_id: int, *, fold: int = 0, epochs: int = 1000, iterations: int = 250,
          val_iterations: int = 50, device: str = "auto", data_workers: int = 0,
          oversample_foreground: Optional[float] = None, mirror_axes: Optional[Sequence[int]] = None) -> Path:
    """Train one fold; returns the fold folder holding checkpoint_final.pth.

    `oversample_foreground` is the share of patches centred on a labelled voxel (nnU-Net: 0.33; more helps thin,
    sparse structures learn within a short CPU schedule). `mirror_axes` (plans axis order) replaces nnU-Net's
    mirroring augmentation, e.g. (2,) for left-right only: flipping head to foot hides which level is which.
    The trainer stays nnU-Net's own class, so its checkpoints load anywhere nnU-Net models do.
    """
    require_nnunet()
    import torch

    from sct_rootlets.inference.session import select_device

    check_sampling(oversample_foreground, mirror_axes)
    _, plans, dataset_json = read_plans(work, dataset_id)
    plans["continue_training"] = False
    with nnunet_environment(work, data_workers=data_workers):
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

        trainer = nnUNetTrainer(plans, CONFIGURATION, fold, dataset_json, select_device(device))
        trainer.num_epochs, trainer.num_iterations_per_epoch = epochs, iterations
        trainer.num_val_iterations_per_epoch = val_iterations
        if oversample_foreground is not None:
            trainer.oversample_foreground_percent = oversample_foreground
        if mirror_axes is not None:
            _restrict_mirroring(trainer, tuple(mirror_axes))
        torch.manual_seed(fold)
        trainer.run_training()
        return Path(trainer.output_folder)


def _restrict_mirroring(trainer, axes: tuple) -> None:
    """Make the trainer augment (and record for test-time augmentation) mirroring along `axes` only."""
    configure = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size

    def configure_with_axes():
        rotation, dummy_2d, initial_patch_size, _ = configure()
        trainer.inference_allowed_mirroring_axes = axes
        return rotation, dummy_2d, initial_patch_size, axes

    trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size = configure_with_axes


def _card(name: str, version: str, dataset_json: dict, description: str, urls: Sequence[str], sha256: str) -> dict:
    values = sorted(v for k, v in dataset_json["labels"].items() if k != "background")
    if dataset_json.get("label_mode") == "binary":
        labels = {"rootlets": 1}
    else:
        labels = {spinal_level_name(v): v for v in values if v >= 2}
    return {"name": name, "version": version, "default": False, "description": description, "urls": list(urls),
            "sha256": sha256, "labels": labels, "image_orientation": dataset_json.get("image_orientation", "LPI"),
            "contrasts": list(channel_contrasts(dataset_json["channel_names"]["0"])),
            "license": "see the training data",
            "citation": "trained with sct_rootlets (nnU-Net v2: Isensee et al., Nature Methods 2021)"}


def _inference_checkpoint(path: Path) -> bytes:
    """The checkpoint without what only training needs (torch.save output is deterministic for equal content)."""
    import io

    import torch

    from sct_rootlets.inference.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(path)
    buffer = io.BytesIO()
    torch.save({key: checkpoint[key] for key in INFERENCE_CHECKPOINT_KEYS if key in checkpoint}, buffer)
    return buffer.getvalue()


def export_model(work: Path, dataset_id: int, *, name: str, version: str, output: Path,
                 folds: Optional[Sequence[int]] = None, description: str = "", urls: Sequence[str] = (),
                 checkpoint: str = "final") -> tuple:
    """Zip the trained folds as the published releases are packed, plus a model card carrying the zip's SHA-256.

    Checkpoints keep what inference reads (weights, trainer and configuration names, mirroring axes), not the
    optimizer state. The zip is byte-for-byte reproducible (sorted entries, fixed dates and permissions), so
    exporting the same training twice gives the same checksum. `checkpoint` "best" exports nnU-Net's
    checkpoint_best.pth (best validation pseudo-Dice so far), e.g. of a training stopped early; inference loads
    it when a fold has no final checkpoint. Returns (zip path, card path).
    """
    require_nnunet()
    if checkpoint not in ("final", "best"):
        raise TrainingError(f"Checkpoint {checkpoint!r} must be final or best.")
    checkpoint_name = f"checkpoint_{checkpoint}.pth"
    trainer_dir = dataset_folder(Path(work) / "nnUNet_results", dataset_id) / TRAINER_FOLDER
    fold_dirs = sorted(trainer_dir.glob("fold_*")) if folds is None else [trainer_dir / f"fold_{f}" for f in folds]
    fold_dirs = [f for f in fold_dirs if (f / checkpoint_name).is_file()]
    if not fold_dirs:
        raise TrainingError(f"{trainer_dir} has no fold with {checkpoint_name} to export.")
    release = f"{name}-{version}"
    files = [(trainer_dir / f, f"{release}/{TRAINER_FOLDER}/{f}") for f in EXPORTED_FILES
             if (trainer_dir / f).is_file()]
    checkpoints = [(fold / checkpoint_name, f"{release}/{TRAINER_FOLDER}/{fold.name}/{checkpoint_name}")
                   for fold in fold_dirs]
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    archive = output / f"{release}.zip"
    partial = archive.with_name(archive.name + ".part")
    contents = [(arcname, source.read_bytes()) for source, arcname in files]
    contents += [(arcname, _inference_checkpoint(source)) for source, arcname in checkpoints]
    with zipfile.ZipFile(partial, "w") as zf:
        for arcname, data in sorted(contents):
            info = zipfile.ZipInfo(arcname, date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    os.replace(partial, archive)
    dataset_json = json.loads((trainer_dir / "dataset.json").read_text())
    card = _card(name, version, dataset_json, description or f"rootlets model {release} trained with sct_rootlets",
                 urls, sha256_of_file(archive))
    card_path = output / f"{name}.json"
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return archive, card_path

