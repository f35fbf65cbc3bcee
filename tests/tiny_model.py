"""A tiny but real nnU-Net v2 model, built from plans with seeded weights, in the published zip layout.

It has the published rootlets label set (background + lvl1..lvl9) and a 3-stage PlainConvUNet small enough to
run in about a second on a CPU, so tests exercise the exact code path of the published models.
"""

import json
import zipfile
from pathlib import Path

import torch

TRAINER_DIR = "nnUNetTrainer__nnUNetPlans__3d_fullres"
RELEASE_DIR = "model-spinal-rootlets-tiny-r20990101"
PATCH_SIZE = [16, 32, 32]
SPACING = [0.8, 0.8, 0.8]


def dataset_json(image_orientation=None) -> dict:
    labels = {"background": 0, **{f"lvl{i}": i for i in range(1, 10)}}
    data = {"channel_names": {"0": "T2w"}, "labels": labels, "numTraining": 2, "file_ending": ".nii.gz"}
    if image_orientation:
        data["image_orientation"] = image_orientation
    return data


def plans() -> dict:
    resampling = "resample_data_or_seg_to_shape"
    configuration = {
        "data_identifier": "nnUNetPlans_3d_fullres",
        "preprocessor_name": "DefaultPreprocessor",
        "batch_size": 2,
        "patch_size": PATCH_SIZE,
        "median_image_size_in_voxels": [29, 99, 99],
        "spacing": SPACING,
        "normalization_schemes": ["ZScoreNormalization"],
        "use_mask_for_norm": [False],
        "resampling_fn_data": resampling,
        "resampling_fn_seg": resampling,
        "resampling_fn_probabilities": resampling,
        "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
        "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
        "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0,
                                               "force_separate_z": None},
        "architecture": {
            "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            "arch_kwargs": {
                "n_stages": 3,
                "features_per_stage": [4, 8, 16],
                "conv_op": "torch.nn.modules.conv.Conv3d",
                "kernel_sizes": [[3, 3, 3]] * 3,
                "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
                "n_conv_per_stage": [1, 1, 1],
                "n_conv_per_stage_decoder": [1, 1],
                "conv_bias": True,
                "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                "norm_op_kwargs": {"eps": 1e-05, "affine": True},
                "dropout_op": None,
                "dropout_op_kwargs": None,
                "nonlin": "torch.nn.LeakyReLU",
                "nonlin_kwargs": {"inplace": True},
            },
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
        },
        "batch_dice": False,
    }
    return {
        "dataset_name": "Dataset999_TinyRootlets",
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": SPACING,
        "original_median_shape_after_transp": [29, 99, 99],
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "configurations": {"3d_fullres": configuration},
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            "0": {"max": 1000.0, "mean": 300.0, "median": 300.0, "min": 0.0, "percentile_00_5": 10.0,
                  "percentile_99_5": 900.0, "std": 100.0}},
    }


def _weights(seed: int) -> dict:
    """Seeded He-initialised weights of the plans network (varied enough to output every label)."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    arch = plans()["configurations"]["3d_fullres"]["architecture"]
    torch.manual_seed(seed)
    network = get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"],
                                     1, 10, allow_init=True, deep_supervision=False)
    return {name: tensor.clone() for name, tensor in network.state_dict().items()}


def build_model_folder(root: Path, *, folds=("0", "1"), image_orientation=None,
                       checkpoint_name="checkpoint_final.pth") -> Path:
    """Write `<root>/<release>/<trainer>/...`; return the trainer folder."""
    trainer_dir = Path(root) / RELEASE_DIR / TRAINER_DIR
    trainer_dir.mkdir(parents=True)
    ds_json, plan = dataset_json(image_orientation), plans()
    (trainer_dir / "dataset.json").write_text(json.dumps(ds_json, indent=2))
    (trainer_dir / "plans.json").write_text(json.dumps(plan, indent=2))
    for index, fold in enumerate(folds):
        fold_dir = trainer_dir / f"fold_{fold}"
        fold_dir.mkdir()
        checkpoint = {
            "network_weights": _weights(seed=1000 + index),
            "trainer_name": "nnUNetTrainer",
            "init_args": {"plans": plan, "configuration": "3d_fullres", "fold": fold, "dataset_json": ds_json},
            "inference_allowed_mirroring_axes": (0, 1, 2),
        }
        torch.save(checkpoint, fold_dir / checkpoint_name)
    return trainer_dir


def zip_folder(folder: Path, archive: Path) -> Path:
    """Zip the contents of `folder` (entries relative to it), as the published releases are packed."""
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(Path(folder).rglob("*")):
            zf.write(path, path.relative_to(folder).as_posix())
    return archive
