"""Variants of labelled scans for training (field of view, resolution, pose, contrast) and folds by chosen
validation subjects: geometry checked in world coordinates, files as a BIDS dataset of sessions."""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from conftest import run_cli
from sct_rootlets.training.augment import AugmentOptions, augment_case, augment_dataset
from sct_rootlets.training.manifest import COLUMNS, DatasetError
from sct_rootlets.training.nnunet_dataset import grouped_folds, parse_fold_subjects


def _scan(shape=(40, 60, 30), zooms=(1.0, 0.8, 1.2)):
    """An oblique-free PSR-like image with a labelled 'cord' bar along its second axis."""
    rng = np.random.default_rng(0)
    data = rng.normal(100, 10, shape).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    label[18:22, 10:50, 13:17] = 1
    data[label > 0] = 300
    affine = np.diag([*zooms, 1.0])
    affine[:3, 3] = [5.0, -12.0, 30.0]
    return nib.Nifti1Image(data, affine), label


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_a_variant_keeps_anatomy_and_label_where_they_were_in_the_world(seed):
    image, label = _scan()
    options = AugmentOptions(min_extent_mm=1000.0)  # the whole field of view: the bar stays inside
    variant, new_label = augment_case(np.random.default_rng(seed), image, label, options)
    zooms = np.sqrt((variant.affine[:3, :3] ** 2).sum(axis=0))
    assert variant.shape == new_label.shape and new_label.dtype == np.uint8
    assert set(np.unique(new_label)) == {0, 1}
    assert np.all(zooms >= options.voxel_mm[0] - 1e-6) and np.all(zooms <= options.thick_voxel_mm[1] + 1e-6)
    directions = variant.affine[:3, :3] / zooms
    np.testing.assert_allclose(directions.T @ directions, np.eye(3), atol=1e-6)  # a rotation, no shear
    # every labelled voxel of the variant lies, in the world, on the original bar (the field of view may cut it)
    voxels = np.argwhere(new_label > 0)
    assert len(voxels), "the field of view is centred near a labelled voxel"
    world = variant.affine[:3, :3] @ voxels.T + variant.affine[:3, 3:4]
    original = np.rint(np.linalg.solve(image.affine[:3, :3], world - image.affine[:3, 3:4])).astype(int).T
    inside = np.all((original >= 0) & (original < label.shape), axis=1)
    near_bar = np.zeros(label.shape, bool)
    near_bar[17:23, 9:51, 12:18] = True  # the bar widened by one voxel: resampling blurs its edge
    assert inside.all() and near_bar[tuple(original.T)].mean() > 0.97
    bright = np.asarray(variant.dataobj)[new_label > 0].mean()
    assert bright > np.asarray(variant.dataobj)[new_label == 0].mean(), "the labelled bar is still the bright one"


def test_intensity_remapping_changes_which_tissue_is_bright_and_leaves_the_geometry():
    """-intensity-remap (README, "Cord segmentation"): with every variant remapped, the labelled bar (bright in the
    scan: 300 against 100) is darker than its surroundings in some variants, as the cord is on T1w against the
    CSF, while grid and label are those of the same draw without remapping."""
    image, label = _scan()
    plain = AugmentOptions(min_extent_mm=1000.0)
    remapped, darker = AugmentOptions(min_extent_mm=1000.0, remap_share=1.0), 0
    for seed in range(12):
        variant, new_label = augment_case(np.random.default_rng(seed), image, label, remapped)
        unchanged, same_label = augment_case(np.random.default_rng(seed), image, label, plain)
        np.testing.assert_array_equal(new_label, same_label)
        np.testing.assert_array_equal(variant.affine, unchanged.affine)
        data = np.asarray(variant.dataobj)
        darker += data[new_label > 0].mean() < data[new_label == 0].mean()
        assert np.isfinite(data).all() and data.min() >= 0
    assert 2 <= darker <= 10, f"the bar is darker in {darker} of 12 variants: the order of tissues is random"


def test_variants_are_reproducible_and_differ_between_draws():
    image, label = _scan()
    first = augment_case(np.random.default_rng([7, 0, 1]), image, label)
    again = augment_case(np.random.default_rng([7, 0, 1]), image, label)
    other = augment_case(np.random.default_rng([7, 0, 2]), image, label)
    np.testing.assert_array_equal(np.asarray(first[0].dataobj), np.asarray(again[0].dataobj))
    np.testing.assert_array_equal(first[0].affine, again[0].affine)
    assert first[0].shape != other[0].shape or not np.allclose(first[0].affine, other[0].affine)


def _bids(root, suffixes=("T2w",)):
    """sub-a and sub-b, an image of each suffix (entities included, e.g. inv-1_MP2RAGE) with its _label-SC_seg."""
    image, label = _scan()
    for subject in ("sub-a", "sub-b"):
        (root / subject / "anat").mkdir(parents=True)
        labels = root / "derivatives" / "labels" / subject / "anat"
        labels.mkdir(parents=True)
        for suffix in suffixes:
            nib.save(image, root / subject / "anat" / f"{subject}_{suffix}.nii.gz")
            nib.save(nib.Nifti1Image(label, image.affine), labels / f"{subject}_{suffix}_label-SC_seg.nii.gz")
    return root


def test_augment_dataset_writes_sessions_with_labels_on_their_grid(tmp_path):
    source = _bids(tmp_path / "src")
    written = augment_dataset(source, tmp_path / "aug", label_suffix="_label-SC_seg", count=2, seed=3)
    assert len(written) == 6
    for path in written:
        subject, session = path.parts[-4], path.parts[-3]
        assert session in ("ses-aug00", "ses-aug01", "ses-aug02")
        label = (tmp_path / "aug" / "derivatives" / "labels" / subject / session / "anat" /
                 path.name.replace("_T2w.nii.gz", "_T2w_label-SC_seg.nii.gz"))
        image, mask = nib.load(path), nib.load(label)
        assert image.shape == mask.shape
        np.testing.assert_allclose(image.affine, mask.affine)
        assert np.asanyarray(mask.dataobj).any()
    original = nib.load(source / "sub-a" / "anat" / "sub-a_T2w.nii.gz")
    copy = nib.load(tmp_path / "aug" / "sub-a" / "ses-aug00" / "anat" / "sub-a_ses-aug00_T2w.nii.gz")
    np.testing.assert_array_equal(np.asarray(copy.dataobj), np.asarray(original.dataobj))
    with pytest.raises(Exception, match="has no T2w image with a _label-rootlets_dseg label"):
        augment_dataset(source, tmp_path / "none", label_suffix="_label-rootlets_dseg", count=1, seed=0)


def test_folds_by_chosen_validation_subjects():
    table = pd.DataFrame([{**{c: "" for c in COLUMNS}, "subject": subject, "split": "train",
                           "image": f"{subject}/anat/{subject}_ses-{k}_T2w.nii.gz"}
                          for subject in ("sub-a", "sub-b", "sub-c", "sub-s1") for k in (0, 1)])
    groups = parse_fold_subjects("a,b; c")
    assert groups == [["sub-a", "sub-b"], ["sub-c"]]
    folds = grouped_folds(table, groups)
    assert [len(fold["val"]) for fold in folds] == [4, 2]
    for fold, group in zip(folds, groups):
        assert all(case.split("_")[0] in group for case in fold["val"])
        assert not any(case.split("_")[0] in group for case in fold["train"])
        assert any(case.startswith("sub-s1") for case in fold["train"]), "other subjects train in every fold"
    with pytest.raises(DatasetError, match="sub-z have no training image"):
        grouped_folds(table, [["sub-z"]])
    with pytest.raises(DatasetError, match="no empty fold"):
        parse_fold_subjects("a;;b")


def test_augment_command_refuses_to_replace_variants(tmp_path, rootlets_home):
    source = _bids(tmp_path / "src")
    args = ("augment", "-path-data", source, "-o", tmp_path / "aug", "-n", "1", "-seed", "5")
    first = run_cli(*args, env_home=rootlets_home, command="sct_rootlets_dataset")
    assert first.returncode == 0, first.stderr
    assert len(list((tmp_path / "aug").rglob("*_T2w.nii.gz"))) == 4
    again = run_cli(*args, env_home=rootlets_home, command="sct_rootlets_dataset")
    assert again.returncode == 1 and "already exists; use -overwrite" in again.stderr


def test_manifest_pairs_other_labels_and_build_writes_the_chosen_folds(tmp_path, rootlets_home):
    source = _bids(tmp_path / "src")
    manifest = tmp_path / "m.tsv"
    result = run_cli("manifest", "-path-data", source, "-o", manifest, "-test-fraction", "0", "-label-suffix",
                     "_label-SC_seg", env_home=rootlets_home, command="sct_rootlets_dataset")
    assert result.returncode == 0, result.stderr
    assert sorted(pd.read_csv(manifest, sep="\t").subject) == ["sub-a", "sub-b"]
    result = run_cli("build", "-path-data", source, "-manifest", manifest, "-o", tmp_path / "raw", "-id", "777",
                     "-name", "Cord", "-labels", "binary", "-fold-subjects", "a;b", env_home=rootlets_home,
                     command="sct_rootlets_dataset")
    assert result.returncode == 0, result.stderr
    splits = json.loads((tmp_path / "raw" / "Dataset777_Cord" / "splits_final.json").read_text())
    assert splits == [{"train": ["sub-b_T2w"], "val": ["sub-a_T2w"]}, {"train": ["sub-a_T2w"], "val": ["sub-b_T2w"]}]


def test_manifest_build_and_augment_take_the_images_of_one_suffix(tmp_path, rootlets_home):
    """An MP2RAGE dataset beside T2w images: -suffix picks the contrast, build names nnU-Net's input channel after
    the images' contrasts (MP2RAGE's inversions as RootletSeg's card names them), and an exported card lists them."""
    from sct_rootlets.training.train import _card

    source = _bids(tmp_path / "src", suffixes=("T2w", "UNIT1", "inv-1_MP2RAGE", "inv-2_MP2RAGE"))

    def dataset(suffix: str, dataset_id: str) -> tuple:
        """(manifest rows, dataset.json, training images) of manifest -suffix SUFFIX then build."""
        manifest = tmp_path / f"{dataset_id}.tsv"
        made = run_cli("manifest", "-path-data", source, "-suffix", suffix, "-o", manifest, "-test-fraction", "0",
                       "-label-suffix", "_label-SC_seg", env_home=rootlets_home, command="sct_rootlets_dataset")
        assert made.returncode == 0, made.stderr
        built = run_cli("build", "-path-data", source, "-manifest", manifest, "-o", tmp_path / "raw", "-id",
                        dataset_id, "-name", suffix.replace("-", ""), "-labels", "binary", "-folds", "1",
                        env_home=rootlets_home, command="sct_rootlets_dataset")
        assert built.returncode == 0, built.stderr
        folder = next((tmp_path / "raw").glob(f"Dataset{dataset_id}_*"))
        return (pd.read_csv(manifest, sep="\t")[["image", "label"]].values.tolist(),
                json.loads((folder / "dataset.json").read_text()),
                sorted(p.name for p in (folder / "imagesTr").iterdir()))

    rows, dataset_json, cases = dataset("UNIT1", "801")
    assert rows == [[f"{s}/anat/{s}_UNIT1.nii.gz", f"derivatives/labels/{s}/anat/{s}_UNIT1_label-SC_seg.nii.gz"]
                    for s in ("sub-a", "sub-b")]
    assert dataset_json["channel_names"] == {"0": "UNIT1"}
    assert cases == ["sub-a_UNIT1_0000.nii.gz", "sub-b_UNIT1_0000.nii.gz"]
    rows, dataset_json, _ = dataset("MP2RAGE", "802")
    assert [image for image, _ in rows] == [f"{s}/anat/{s}_inv-{k}_MP2RAGE.nii.gz" for s in ("sub-a", "sub-b")
                                            for k in (1, 2)]
    assert dataset_json["channel_names"] == {"0": "T1w-INV1+T1w-INV2"}
    assert _card("m", "v1", dataset_json, "", [], "0" * 64)["contrasts"] == ["T1w-INV1", "T1w-INV2"]

    written = augment_dataset(source, tmp_path / "aug", suffix="inv-2_MP2RAGE", label_suffix="_label-SC_seg",
                              count=1, seed=0)
    assert sorted(p.relative_to(tmp_path / "aug").as_posix() for p in written) == [
        f"{s}/ses-aug0{k}/anat/{s}_ses-aug0{k}_inv-2_MP2RAGE.nii.gz" for s in ("sub-a", "sub-b") for k in (0, 1)]
    assert (tmp_path / "aug/derivatives/labels/sub-a/ses-aug01/anat/"
            "sub-a_ses-aug01_inv-2_MP2RAGE_label-SC_seg.nii.gz").is_file()
    with pytest.raises(Exception, match="has no T1w image with a _label-SC_seg label"):
        augment_dataset(source, tmp_path / "none", suffix="T1w", label_suffix="_label-SC_seg", count=1, seed=0)
    bad = run_cli("manifest", "-path-data", source, "-suffix", "MP2RAGE.nii.gz", "-o", tmp_path / "bad.tsv",
                  env_home=rootlets_home, command="sct_rootlets_dataset")
    assert bad.returncode == 2 and "is not a BIDS suffix" in bad.stderr and not (tmp_path / "bad.tsv").exists()
