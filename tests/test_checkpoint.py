"""Loading a model runs no code: checkpoints are read with torch's weights-only unpickler plus numpy's numbers.

A checkpoint whose unpickling would create a file is refused by the command, by training and by export, and the
file never appears; checkpoints written by nnU-Net's own trainer and by our lean trainer load with every weight,
number and optimizer state they were saved with.
"""

import contextlib
import io
import json
import pathlib
import pickle
import shutil
import types

import numpy as np
import pytest
import torch

import tiny_model
from conftest import ras_image, run_cli
from sct_rootlets.errors import ModelError
from sct_rootlets.inference import checkpoint as checkpoint_module
from sct_rootlets.inference.checkpoint import load_checkpoint

DATASET_ID = 999  # tiny_model's plans: Dataset999_TinyRootlets


class TouchOnLoad:
    """Unpickling this creates `marker`: what a malicious checkpoint would do, harmlessly."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def poison(checkpoint_path: pathlib.Path, marker: pathlib.Path) -> None:
    """Rewrite a valid checkpoint with the payload beside its weights."""
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    checkpoint["logging"] = {"note": TouchOnLoad(marker)}
    torch.save(checkpoint, checkpoint_path)


def files_under(folder: pathlib.Path) -> set:
    return {path.relative_to(folder) for path in folder.rglob("*")}


def refusal(path) -> str:
    """The sentence the payload checkpoints get (pickle protocol 2 saves Path.touch as getattr(Path, 'touch'))."""
    return (f"Checkpoint {path} holds objects other than weights and numbers (GLOBAL getattr), so it was refused: "
            f"loading it could run code.")


@pytest.fixture(params=["torch's weights-only unpickler", "our unpickler (torch before 2.6)"])
def loader(request, monkeypatch):
    """Both ways checkpoints are read: torch 2.6+ (this machine) and the older torch of SCT's environment, whose
    path is taken here by telling the loader that torch cannot allow numpy numbers by name."""
    if request.param.startswith("our"):
        monkeypatch.setattr(checkpoint_module, "_reads_numpy_numbers", lambda torch: False)
    return request.param


def test_a_payload_is_refused_by_either_loader_and_never_runs(loader, tmp_path, tiny_trainer_dir):
    path = tmp_path / "checkpoint_final.pth"
    shutil.copy(tiny_trainer_dir / "fold_0" / "checkpoint_final.pth", path)
    marker = tmp_path / "payload_ran"
    poison(path, marker)
    with pytest.raises(ModelError) as refused:
        load_checkpoint(path)
    assert str(refused.value) == refusal(path)
    assert not marker.exists()


def test_a_checkpoint_that_would_run_code_is_refused_by_the_command(tmp_path, tiny_model_root, rootlets_home):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_root, model)
    poisoned = model / tiny_model.RELEASE_DIR / tiny_model.TRAINER_DIR / "fold_0" / "checkpoint_final.pth"
    marker = tmp_path / "payload_ran"
    poison(poisoned, marker)
    data = tmp_path / "data"
    data.mkdir()
    image = data / "sub-01_T2w.nii.gz"
    ras_image().to_filename(image)
    data_before, model_before = files_under(data), files_under(model)

    result = run_cli("-i", image, "-model", model, env_home=rootlets_home, cwd=tmp_path)

    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()  # before it: the cord step's progress, computed meanwhile
    assert [line for line in lines if line.startswith("sct_deepseg_rootlets")] == [lines[-1]], result.stderr
    assert lines[-1] == f"sct_deepseg_rootlets: error: {refusal(poisoned)}" and "Traceback" not in result.stderr
    assert not marker.exists()
    assert files_under(data) == data_before and files_under(model) == model_before  # no output, no ONNX cache
    torch.load(poisoned, map_location="cpu", weights_only=False)  # the payload is live: a plain load runs it
    assert marker.exists()


def nnunet_trainer_checkpoint(work: pathlib.Path):
    """A real nnUNetTrainer of the tiny plans after one epoch (one training and one validation step on random
    patches, nnU-Net's own epoch hooks), and the checkpoint its `save_checkpoint` wrote."""
    from sct_rootlets.training.train import nnunet_environment

    plans = {**tiny_model.plans(), "continue_training": False}
    cases = work / "nnUNet_preprocessed" / plans["dataset_name"] / "nnUNetPlans_3d_fullres"
    cases.mkdir(parents=True)
    (cases / "case_0.npz").touch()  # the trainer only looks at the file endings to pick its dataset class
    torch.manual_seed(0)
    data = torch.randn(2, 1, *tiny_model.PATCH_SIZE)
    seg = torch.randint(0, 10, (2, 1, *tiny_model.PATCH_SIZE)).float()
    batch = {"data": data, "target": [seg, seg[:, :, ::2, ::2, ::2]]}  # deep supervision: full and half size
    with nnunet_environment(work, data_workers=1), contextlib.redirect_stdout(io.StringIO()):
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

        trainer = nnUNetTrainer(plans, "3d_fullres", 0, tiny_model.dataset_json(), torch.device("cpu"))
        trainer.initialize()
        trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        trainer.on_epoch_start()
        trainer.on_train_epoch_start()
        trainer.on_train_epoch_end([trainer.train_step(batch)])
        trainer.on_validation_epoch_start()
        trainer.on_validation_epoch_end([trainer.validation_step(batch)])
        trainer.on_epoch_end()
        path = work / "checkpoint_latest.pth"
        trainer.save_checkpoint(str(path))
    return trainer, path


def test_nnunet_trainer_checkpoint_loads_with_everything_it_saved(loader, tmp_path):
    trainer, path = nnunet_trainer_checkpoint(tmp_path)
    held = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    assert "numpy.dtype" in held and held & {"numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar"}

    checkpoint = load_checkpoint(path)

    assert set(checkpoint) == {"network_weights", "optimizer_state", "grad_scaler_state", "logging", "_best_ema",
                               "current_epoch", "init_args", "trainer_name", "inference_allowed_mirroring_axes"}
    weights = trainer.network.state_dict()
    assert list(checkpoint["network_weights"]) == list(weights)
    assert all(torch.equal(checkpoint["network_weights"][name], tensor) for name, tensor in weights.items())
    optimizer = trainer.optimizer.state_dict()
    assert checkpoint["optimizer_state"]["param_groups"] == optimizer["param_groups"]
    assert all(torch.equal(checkpoint["optimizer_state"]["state"][index]["momentum_buffer"], state["momentum_buffer"])
               for index, state in optimizer["state"].items())
    logging = trainer.logger.get_checkpoint()
    assert checkpoint["logging"] == logging and isinstance(logging["train_losses"][0], np.floating)
    assert [type(value) for value in checkpoint["logging"]["train_losses"]] == [type(logging["train_losses"][0])]
    assert checkpoint["_best_ema"] == trainer._best_ema and type(checkpoint["_best_ema"]) is type(trainer._best_ema)
    assert checkpoint["init_args"]["device"] == torch.device("cpu")
    assert checkpoint["init_args"]["plans"] == trainer.my_init_kwargs["plans"]
    assert checkpoint["grad_scaler_state"] is None  # no grad scaler on a CPU
    assert (checkpoint["current_epoch"], checkpoint["trainer_name"]) == (2, "nnUNetTrainer")
    assert checkpoint["inference_allowed_mirroring_axes"] == (0, 1, 2)


class _Numpy1Pickler(pickle._Pickler):
    """Writes numpy scalars under numpy 1's name for their constructor, as models trained under numpy 1 carry it."""

    SCALAR = np.float64(0).__reduce__()[0]

    def save_global(self, obj, name=None):
        if obj is self.SCALAR:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\nscalar\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)


@pytest.mark.parametrize("numpy_name", ["numpy.core.multiarray.scalar", "current"])
def test_numpy_numbers_load_under_either_numpy_spelling_and_the_allowlist_ends_with_the_load(loader, numpy_name,
                                                                                            tmp_path):
    numbers = {"losses": [np.float32(0.75), np.float32(0.5)], "ema": np.float64(0.125)}
    path = tmp_path / "checkpoint.pth"
    pickle_module = pickle
    if numpy_name != "current":
        pickle_module = types.ModuleType("numpy1_pickle")
        pickle_module.Pickler = _Numpy1Pickler
    torch.save({"network_weights": {"w": torch.arange(3.0)}, "logging": numbers}, path, pickle_module=pickle_module)
    if numpy_name != "current":
        assert numpy_name in torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    allowed_before = set(torch.serialization.get_safe_globals())

    checkpoint = load_checkpoint(path)

    assert checkpoint["logging"] == numbers
    assert [type(v) for v in checkpoint["logging"]["losses"]] == [np.float32, np.float32]
    assert type(checkpoint["logging"]["ema"]) is np.float64
    assert torch.equal(checkpoint["network_weights"]["w"], torch.tensor([0.0, 1.0, 2.0]))
    assert set(torch.serialization.get_safe_globals()) == allowed_before
    with pytest.raises(pickle.UnpicklingError):  # nothing stays allowed for other loads in the process
        torch.load(path, weights_only=True)


def test_other_numpy_numbers_and_damaged_files_are_refused_in_one_sentence(loader, tmp_path):
    integer = tmp_path / "integer.pth"
    torch.save({"network_weights": {}, "count": np.int64(3)}, integer)
    with pytest.raises(ModelError) as refused:
        load_checkpoint(integer)
    assert str(refused.value) == (f"Checkpoint {integer} holds objects other than weights and numbers (an object "
                                  f"of class numpy.dtypes.Int64DType), so it was refused: loading it could run code.")

    truncated = tmp_path / "truncated.pth"
    torch.save({"network_weights": {"w": torch.zeros(1000)}}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:2000])
    with pytest.raises(ModelError, match=f"^Checkpoint {truncated} cannot be loaded: "):
        load_checkpoint(truncated)

    weights_alone = tmp_path / "weights.pth"
    torch.save(torch.zeros(2), weights_alone)
    with pytest.raises(ModelError, match="holds a Tensor, not an nnU-Net checkpoint"):
        load_checkpoint(weights_alone)


def preprocessed_dataset(work: pathlib.Path) -> None:
    """Two nnU-Net preprocessed cases of the tiny model's plans (each of levels 1-9 on two slices), as the plan
    step leaves them."""
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetNumpy

    plans = tiny_model.plans()
    folder = work / "nnUNet_preprocessed" / plans["dataset_name"]
    cases = folder / plans["configurations"]["3d_fullres"]["data_identifier"]
    cases.mkdir(parents=True)
    (folder / "nnUNetPlans.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps(tiny_model.dataset_json()))
    rng = np.random.default_rng(0)
    for index in range(2):
        seg = np.zeros((1, *tiny_model.PATCH_SIZE), np.int16)
        for level in range(1, 10):
            seg[0, level:level + 2, 10 + index:16 + index, 12:18] = level
        data = (rng.normal(0, 1, seg.shape) + 2.0 * (seg > 0)).astype(np.float32)
        locations = {level: np.argwhere(seg == level) for level in range(1, 10)}
        nnUNetDatasetNumpy.save_case(data, seg, {"class_locations": locations}, str(cases / f"case_{index}"))


def test_lean_trainer_checkpoints_load_and_training_continues_from_them(tmp_path):
    from sct_rootlets.training.lean import LeanSchedule, train_lean

    preprocessed_dataset(tmp_path)
    schedule = LeanSchedule(epochs=1, iterations=2, val_patches=1, warmup_iterations=1)
    fold = train_lean(tmp_path, DATASET_ID, fold="all", schedule=schedule, device="cpu", log=lambda _: None)
    latest_path = fold / "checkpoint_latest.pth"
    saved = torch.load(latest_path, map_location="cpu", weights_only=False)  # what was saved, read the old way

    latest = load_checkpoint(latest_path)

    assert set(latest) == set(saved) == {"network_weights", "current_epoch", "init_args", "trainer_name",
                                         "inference_allowed_mirroring_axes", "best_val_dice", "optimizer_state"}
    assert list(latest["network_weights"]) == list(saved["network_weights"])
    assert all(torch.equal(latest["network_weights"][name], tensor)
               for name, tensor in saved["network_weights"].items())
    assert latest["optimizer_state"]["param_groups"] == saved["optimizer_state"]["param_groups"]
    for index, state in saved["optimizer_state"]["state"].items():
        assert set(latest["optimizer_state"]["state"][index]) == {"step", "exp_avg", "exp_avg_sq"}
        assert all(torch.equal(latest["optimizer_state"]["state"][index][key], value) for key, value in state.items())
    assert (latest["current_epoch"], latest["init_args"]["device"]) == (1, "cpu")
    assert latest["best_val_dice"] == saved["best_val_dice"]
    final = load_checkpoint(fold / "checkpoint_final.pth")
    assert "optimizer_state" not in final
    assert all(torch.equal(final["network_weights"][name], tensor) for name, tensor in saved["network_weights"].items())

    messages = []
    train_lean(tmp_path, DATASET_ID, fold="all", schedule=LeanSchedule(epochs=2, iterations=2, val_patches=1,
               warmup_iterations=1), device="cpu", resume=True, log=messages.append)
    assert messages[0] == "continuing after epoch 1" and load_checkpoint(latest_path)["current_epoch"] == 2


def test_training_and_export_refuse_a_checkpoint_that_would_run_code(tmp_path, tiny_trainer_dir):
    from sct_rootlets.training.lean import LeanSchedule, train_lean
    from sct_rootlets.training.train import export_model

    preprocessed_dataset(tmp_path)
    marker = tmp_path / "payload_ran"
    pretrained = tmp_path / "pretrained.pth"
    shutil.copyfile(tiny_trainer_dir / "fold_0" / "checkpoint_final.pth", pretrained)
    poison(pretrained, marker)
    schedule = LeanSchedule(epochs=1, iterations=1, val_patches=1, warmup_iterations=1)
    with pytest.raises(ModelError) as refused:
        train_lean(tmp_path, DATASET_ID, fold=0, schedule=schedule, device="cpu", pretrained=pretrained,
                   log=lambda _: None)
    assert str(refused.value) == refusal(pretrained)

    results = tmp_path / "nnUNet_results" / "Dataset999_TinyRootlets"
    latest = results / tiny_model.TRAINER_DIR / "fold_0" / "checkpoint_latest.pth"
    shutil.copyfile(pretrained, latest)
    with pytest.raises(ModelError) as refused:
        train_lean(tmp_path, DATASET_ID, fold=0, schedule=schedule, device="cpu", resume=True, log=lambda _: None)
    assert str(refused.value) == refusal(latest)

    shutil.copyfile(pretrained, latest.with_name("checkpoint_final.pth"))
    with pytest.raises(ModelError) as refused:
        export_model(tmp_path, DATASET_ID, name="tiny", version="v1", output=tmp_path / "export", folds=[0])
    assert str(refused.value) == refusal(latest.with_name("checkpoint_final.pth"))
    assert not marker.exists() and not list((tmp_path / "export").glob("*"))
