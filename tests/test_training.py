"""The training loop end to end through the real commands: manifest -> build -> plan -> train (a few iterations)
-> export (reproducible) -> install -> predict -> evaluate; plus the dataset checks and active-learning output."""

import hashlib
import io
import json
import shutil
import zipfile

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from nibabel import orientations

from conftest import run_cli
from sct_rootlets.training.manifest import COLUMNS

SHAPE = (32, 32, 24)


def _subject(seed: int, stored_as=("R", "A", "S")):
    """A volume with a bright cord and dark rootlet strands, one per level 2..9 along z, and its labels."""
    rng = np.random.default_rng(seed)
    image = rng.normal(300, 15, SHAPE)
    labels = np.zeros(SHAPE, np.uint8)
    image[13:19, 13:19, :] = 600
    for level in range(2, 10):
        z = 21 - (level - 2) * 3
        side = 8 + rng.integers(-1, 2)
        labels[side:13, 15:17, z:z + 2] = level
    image[labels > 0] = 80
    affine = np.diag([0.8, 0.8, 0.8, 1.0])
    ornt = orientations.ornt_transform(orientations.axcodes2ornt(("R", "A", "S")),
                                       orientations.axcodes2ornt(stored_as))
    image_nii = nib.as_closest_canonical(nib.Nifti1Image(image.astype(np.float32), affine)).as_reoriented(ornt)
    labels_nii = nib.as_closest_canonical(nib.Nifti1Image(labels, affine)).as_reoriented(ornt)
    return image_nii, labels_nii


def make_labelled_dataset(root):
    dataset = root / "ds"
    for index in range(1, 9):
        subject = f"sub-{index:02d}"
        image, labels = _subject(index, ("A", "I", "L") if index % 3 == 0 else ("R", "A", "S"))
        (dataset / subject / "anat").mkdir(parents=True)
        nib.save(image, dataset / subject / "anat" / f"{subject}_T2w.nii.gz")
        if index <= 6:  # sub-07 and sub-08 are unlabelled (for predict-to-bids)
            folder = dataset / "derivatives" / "labels" / subject / "anat"
            folder.mkdir(parents=True)
            nib.save(labels, folder / f"{subject}_T2w_label-rootlets_dseg.nii.gz")
    return dataset


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run_ok(rootlets_home, command, *args):
    result = run_cli(*args, env_home=rootlets_home, command=command)
    assert result.returncode == 0, f"{command} {args}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


def test_training_loop_end_to_end(tmp_path, rootlets_home):
    dataset = make_labelled_dataset(tmp_path)
    work, manifest = tmp_path / "work", tmp_path / "D1a.tsv"

    def cli(command, *args):
        return _run_ok(rootlets_home, command, *args)

    cli("sct_rootlets_dataset", "manifest", "-path-data", dataset, "-o", manifest, "-test-fraction", "0.34")
    table = pd.read_csv(manifest, sep="\t")
    assert list(table.columns) == COLUMNS and len(table) == 6
    test_subjects = sorted(table[table.split == "test"].subject)
    assert len(test_subjects) == 2

    cli("sct_rootlets_dataset", "build", "-path-data", dataset, "-manifest", manifest, "-o", work / "nnUNet_raw",
        "-id", "501", "-name", "D1a", "-labels", "level", "-folds", "2")
    raw = work / "nnUNet_raw" / "Dataset501_D1a"
    assert len(list((raw / "imagesTr").iterdir())) == 4 and len(list((raw / "imagesTs").iterdir())) == 2
    assert nib.aff2axcodes(nib.load(next((raw / "imagesTr").iterdir())).affine) == ("R", "A", "S")
    splits = json.loads((raw / "splits_final.json").read_text())
    assert len(splits) == 2 and all(not set(s["train"]) & set(s["val"]) for s in splits)

    cli("sct_rootlets_train", "plan", "-work", work, "-id", "501", "-patch-size", "16", "32", "32",
        "-base-features", "4", "-max-features", "16")
    configuration = json.loads((work / "nnUNet_preprocessed/Dataset501_D1a/nnUNetPlans.json").read_text())[
        "configurations"]["3d_fullres"]
    assert configuration["patch_size"] == [16, 32, 32]
    assert configuration["architecture"]["arch_kwargs"]["features_per_stage"] == [4, 8, 16, 16]
    assert configuration["architecture"]["arch_kwargs"]["strides"] == [[1, 1, 1], [2, 2, 2], [2, 2, 2], [1, 2, 2]]
    cli("sct_rootlets_train", "train", "-work", work, "-id", "501", "-fold", "0", "-epochs", "2", "-iterations",
        "4", "-val-iterations", "1", "-device", "cpu", "-oversample-foreground", "1", "-mirror-axes", "2")
    cli("sct_rootlets_train", "export", "-work", work, "-id", "501", "-name", "d1a", "-model-version", "v1", "-o",
        work / "export")
    cli("sct_rootlets_train", "export", "-work", work, "-id", "501", "-name", "d1a", "-model-version", "v1", "-o",
        work / "export_again")
    archive = work / "export" / "d1a-v1.zip"
    card = json.loads((work / "export" / "d1a.json").read_text())
    assert card["sha256"] == _sha256(archive) == _sha256(work / "export_again" / "d1a-v1.zip")
    assert card["labels"] == {"C2": 2, "C3": 3, "C4": 4, "C5": 5, "C6": 6, "C7": 7, "C8": 8, "T1": 9}
    with zipfile.ZipFile(archive) as zf:
        entry = next(name for name in zf.namelist() if name.endswith("fold_0/checkpoint_final.pth"))
        checkpoint = torch.load(io.BytesIO(zf.read(entry)), map_location="cpu", weights_only=False)
    assert "optimizer_state" not in checkpoint and checkpoint["network_weights"]
    assert tuple(checkpoint["inference_allowed_mirroring_axes"]) == (2,)

    (rootlets_home / "cards").mkdir(parents=True)
    shutil.copy(work / "export" / "d1a.json", rootlets_home / "cards" / "d1a.json")
    cli("sct_deepseg_rootlets", "-install-from", archive)
    record = json.loads((rootlets_home / "models" / "d1a" / "sct_rootlets_install.json").read_text())
    assert record["checksum"] == "verified" and record["archive_sha256"] == card["sha256"]

    out = tmp_path / "predictions"
    cli("sct_rootlets_batch", "-path-data", dataset, "-path-output", out, "-model", "d1a", "-device", "cpu",
        "-include", " ".join(test_subjects), "-no-qc")
    cli("sct_rootlets_evaluate", "-path-data", dataset, "-manifest", manifest, "-pred", out / "derivatives", "-o",
        tmp_path / "eval")
    metrics = pd.read_csv(tmp_path / "eval" / "metrics.csv")
    assert sorted(metrics.subject.unique()) == test_subjects
    assert set(metrics.level.astype(str)) >= {"all"} and metrics.dice.between(0, 1).all()
    summary = pd.read_csv(tmp_path / "eval" / "summary.csv")
    assert "dice_mean" in summary.columns and "all" in set(summary.level.astype(str))
    assert (tmp_path / "eval" / "per_level.png").stat().st_size > 5000

    cli("sct_rootlets_dataset", "predict-to-bids", "-path-data", dataset, "-model", "d1a", "-device", "cpu")
    autos = sorted(p.name for p in (dataset / "derivatives" / "labels").rglob("*desc-auto_dseg.nii.gz"))
    assert autos == ["sub-07_T2w_label-rootlets_desc-auto_dseg.nii.gz",
                     "sub-08_T2w_label-rootlets_desc-auto_dseg.nii.gz"]


def _manifest(path, rows):
    pd.DataFrame([{**{c: "" for c in COLUMNS}, "include": "yes", **row} for row in rows],
                 columns=COLUMNS).to_csv(path, sep="\t", index=False)


@pytest.mark.parametrize("problem", ["grid", "range", "leak"])
def test_dataset_problems_are_refused_before_writing(problem, tmp_path, rootlets_home):
    dataset = make_labelled_dataset(tmp_path)
    rows = [{"subject": f"sub-0{i}", "image": f"sub-0{i}/anat/sub-0{i}_T2w.nii.gz",
             "label": f"derivatives/labels/sub-0{i}/anat/sub-0{i}_T2w_label-rootlets_dseg.nii.gz",
             "split": "train"} for i in (1, 2, 3)]
    expected = {"grid": "is not on the voxel grid of", "range": "label value(s) [12] out of range",
                "leak": "subject(s) sub-02 in both train and test"}[problem]
    if problem == "grid":
        label = dataset / rows[0]["label"]
        nib.save(nib.Nifti1Image(np.zeros((10, 10, 10), np.uint8), np.eye(4)), label)
    elif problem == "range":
        label = dataset / rows[1]["label"]
        data = np.asanyarray(nib.load(label).dataobj).copy()
        data[0, 0, 0] = 12
        nib.save(nib.Nifti1Image(data, nib.load(label).affine), label)
    else:
        rows.append({**rows[1], "split": "test"})
    _manifest(tmp_path / "m.tsv", rows)
    result = run_cli("build", "-path-data", dataset, "-manifest", tmp_path / "m.tsv", "-o", tmp_path / "raw",
                     "-id", "502", "-name", "Bad", env_home=rootlets_home, command="sct_rootlets_dataset")
    assert result.returncode == 1 and expected in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "raw").exists() or not list((tmp_path / "raw").iterdir())


def test_binary_and_recode_modes(tmp_path):
    from sct_rootlets.training.nnunet_dataset import LabelScheme, parse_recode

    labels = np.array([0, 2, 3, 9])
    assert LabelScheme("binary").apply(labels).tolist() == [0, 1, 1, 1]
    recode = LabelScheme("recode", parse_recode("2:1,3:1,9:0"))
    assert recode.apply(labels).tolist() == [0, 1, 1, 0]
    assert recode.label_names() == {"background": 0, "lvl1": 1}


def test_lean_trainer_writes_an_nnunet_fold_that_segments_and_can_continue(tmp_path, rootlets_home):
    """The CPU loop for synthetic data: nnU-Net's results layout and checkpoint keys, a log line per epoch with the
    validation Dice, `-continue` from the latest checkpoint, and a fold our inference session loads."""
    from sct_rootlets.io.image import load_input_image
    from sct_rootlets.inference.session import InferenceSession
    from sct_rootlets.store.resolve import resolve_model

    dataset = make_labelled_dataset(tmp_path)
    work, manifest = tmp_path / "work", tmp_path / "m.tsv"

    def cli(command, *args):
        return _run_ok(rootlets_home, command, *args)

    cli("sct_rootlets_dataset", "manifest", "-path-data", dataset, "-o", manifest, "-test-fraction", "0")
    cli("sct_rootlets_dataset", "build", "-path-data", dataset, "-manifest", manifest, "-o", work / "nnUNet_raw",
        "-id", "503", "-name", "Lean", "-folds", "3")
    cli("sct_rootlets_train", "plan", "-work", work, "-id", "503", "-patch-size", "16", "32", "32",
        "-base-features", "4", "-max-features", "16")
    train = ("sct_rootlets_train", "train", "-work", work, "-id", "503", "-trainer", "lean", "-iterations", "3",
             "-val-iterations", "2", "-device", "cpu")
    cli(*train, "-epochs", "2")
    fold = work / "nnUNet_results" / "Dataset503_Lean" / "nnUNetTrainer__nnUNetPlans__3d_fullres" / "fold_0"
    log = (fold / "training_log.txt").read_text()
    assert "epoch 1/2: loss" in log and "epoch 2/2: loss" in log and "validation Dice binary" in log
    final = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert final["trainer_name"] == "nnUNetTrainer" and final["init_args"]["configuration"] == "3d_fullres"
    assert tuple(final["inference_allowed_mirroring_axes"]) == (2,) and "optimizer_state" not in final
    latest = torch.load(fold / "checkpoint_latest.pth", map_location="cpu", weights_only=False)
    assert latest["current_epoch"] == 2 and latest["optimizer_state"]

    cli(*train, "-epochs", "3", "-continue")
    log = (fold / "training_log.txt").read_text()
    assert "continuing after epoch 2" in log and "epoch 3/3: loss" in log and "epoch 1/3" not in log

    start = fold / "checkpoint_final.pth"
    cli(*train, "-epochs", "1", "-fold", "1", "-pretrained", start, "-learning-rate", "1e-9")
    tuned = torch.load(fold.parent / "fold_1" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert "starting from the weights of" in (fold.parent / "fold_1" / "training_log.txt").read_text()
    pretrained = torch.load(start, map_location="cpu", weights_only=False)["network_weights"]
    for name, weights in pretrained.items():
        torch.testing.assert_close(tuned["network_weights"][name], weights, atol=1e-5, rtol=0)
    torch.save({"network_weights": {"another.network": torch.zeros(3)}}, tmp_path / "other.pth")
    refused = run_cli(*train[1:], "-fold", "2", "-pretrained", tmp_path / "other.pth", env_home=rootlets_home,
                      command=train[0])
    assert refused.returncode == 1 and "other.pth is not a network of this dataset's plans" in refused.stderr

    session = InferenceSession(resolve_model(str(fold.parent)), device="cpu")
    nib.save(_subject(99)[0], tmp_path / "unseen.nii.gz")
    labels = session.predict(load_input_image(tmp_path / "unseen.nii.gz"))
    assert labels.shape == SHAPE
    # README: nnU-Net's own trainer, "so the usual inference path loads the result": the stock predictor on the
    # trained folder gives the same labels
    from test_inference import stock_prediction

    whole = InferenceSession(resolve_model(str(fold.parent)), device="cpu", region="whole", engine="torch")
    np.testing.assert_array_equal(whole.predict(load_input_image(tmp_path / "unseen.nii.gz")),
                                  stock_prediction(fold.parent, nib.load(tmp_path / "unseen.nii.gz"), folds=(0, 1)))


def test_lean_patches_centre_on_labels_and_pad_outside_the_image():
    from sct_rootlets.training.lean import LeanSchedule, PatchSampler

    data = np.arange(10 * 12 * 14, dtype=np.float32).reshape(1, 10, 12, 14)
    seg = np.zeros((1, 10, 12, 14), np.int16)
    seg[0, 9, 11, 13] = 4  # the corner voxel: a patch centred there leaves the image
    sampler = PatchSampler([(data, seg, {4: np.array([[0, 9, 11, 13]])})], (8, 8, 8), 1.0, ())
    images, labels = sampler.sample(np.random.default_rng(0), 3)
    assert images.shape == labels.shape == (3, 1, 8, 8, 8)
    assert all((labels[i] == 4).sum() == 1 for i in range(3))
    bigger = PatchSampler([(data, seg, {4: np.array([[0, 9, 11, 13]])})], (12, 16, 16), 0.0, ())
    images, labels = bigger.sample(np.random.default_rng(1), 2)
    assert images.shape == (2, 1, 12, 16, 16) and (images == 0).sum() >= 2 * (12 * 16 * 16 - 10 * 12 * 14)
    schedule = LeanSchedule(epochs=2, iterations=50, warmup_iterations=10, learning_rate=1.0)
    assert schedule.learning_rate_at(0) == pytest.approx(0.1) and schedule.learning_rate_at(9) == 1.0
    assert schedule.learning_rate_at(99) < 1e-3 < schedule.learning_rate_at(50) < 1.0
