"""Spinal levels on the PAM50 template: the published definition, gap-free levels, PMJ distances, vertebral
levels, and invariance to storage orientation and voxel size."""

import os

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nibabel import orientations
from scipy import ndimage
from skimage import morphology

from conftest import SHARED_DATA, run_cli

PAM50 = SHARED_DATA / "pam50"
PAM50_SMALL = SHARED_DATA / "pam50_small"
pytestmark = pytest.mark.skipif(not PAM50.is_dir() or not PAM50_SMALL.is_dir(),
                                reason="../shared/data/pam50 and pam50_small are not available")


def _crop_to_rootlets(images: dict) -> dict:
    """Crop every map to the rootlets' neighbourhood (C1..T2) to keep the tests fast; affines stay exact."""
    rootlets = np.asanyarray(images["rootlets"].dataobj)
    low, high = np.argwhere(rootlets).min(axis=0) - 12, np.argwhere(rootlets).max(axis=0) + 24
    low = np.maximum(low, 0)
    return {name: image.slicer[low[0]:high[0], low[1]:high[1], low[2]:high[2]] for name, image in images.items()}


def _pseudo_pmj(discs: nib.Nifti1Image) -> nib.Nifti1Image:
    """PAM50 has no PMJ at 0.5 mm: its top disc label (value 1) serves as a landmark above C2."""
    data = (np.asanyarray(discs.dataobj) == 1).astype(np.uint8)
    return nib.Nifti1Image(data, discs.affine)


def _reoriented(image: nib.Nifti1Image, axcodes) -> nib.Nifti1Image:
    ornt = orientations.ornt_transform(orientations.io_orientation(image.affine), orientations.axcodes2ornt(axcodes))
    return image.as_reoriented(ornt)


def _block_max(image: nib.Nifti1Image) -> nib.Nifti1Image:
    """0.5 mm -> 1 mm: each 2x2x2 block keeps its highest label, so thin rootlets are not lost."""
    data = np.asanyarray(image.dataobj)
    even = [n - n % 2 for n in data.shape]
    data = data[: even[0], : even[1], : even[2]]
    blocks = data.reshape(even[0] // 2, 2, even[1] // 2, 2, even[2] // 2, 2).max(axis=(1, 3, 5))
    affine = image.affine.copy()
    affine[:3, :3] *= 2
    affine[:3, 3] = image.affine[:3, :3] @ [0.5, 0.5, 0.5] + image.affine[:3, 3]
    return nib.Nifti1Image(blocks, affine)


@pytest.fixture(scope="module")
def pam50_images():
    names = {"rootlets": "PAM50_rootlets", "cord": "PAM50_cord", "discs": "PAM50_label_disc"}
    images = _crop_to_rootlets({key: nib.load(PAM50 / f"{name}.nii.gz") for key, name in names.items()})
    images["pmj"] = _pseudo_pmj(images["discs"])
    return images


def _write(images: dict, folder) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key, image in images.items():
        paths[key] = folder / f"{key}.nii.gz"
        nib.save(image, paths[key])
    return paths


def _levels(paths: dict, home, out, *extra) -> pd.DataFrame:
    """Run the command with the PMJ into `out`; return its CSV."""
    result = run_cli("-i", paths["rootlets"], "-s", paths["cord"], "-pmj", paths["pmj"], "-ofolder", out, *extra,
                     env_home=home, command="sct_rootlets_levels")
    assert result.returncode == 0, result.stderr
    return pd.read_csv(out / "rootlets_spinal_levels.csv")


@pytest.fixture(scope="module")
def variants(pam50_images, tmp_path_factory):
    """The same template stored three ways and resampled to 1 mm. Keys are SCT orientation strings: the shipped
    file is nibabel ('L', 'A', 'S') = SCT RPI; nibabel ('R', 'A', 'S') = SCT LPI; ('A', 'I', 'L') = SCT PSR."""
    root = tmp_path_factory.mktemp("pam50_variants")
    return {
        "RPI": _write(pam50_images, root / "RPI"),
        "LPI": _write({k: _reoriented(v, ("R", "A", "S")) for k, v in pam50_images.items()}, root / "LPI"),
        "PSR": _write({k: _reoriented(v, ("A", "I", "L")) for k, v in pam50_images.items()}, root / "PSR"),
        "1mm": _write({k: _block_max(v) for k, v in pam50_images.items()}, root / "1mm"),
    }


def test_extent_equals_the_published_definition(variants, rootlets_home, tmp_path):
    paths = variants["RPI"]
    table = _levels(paths, rootlets_home, tmp_path).set_index("spinal_level")

    # Independent computation: dilate the cord by a 3 mm ball (6 voxels of 0.5 mm), intersect with the rootlets,
    # take each level's slice range (the shipped file's z axis points superior, so z is the slice number).
    rootlets = np.asanyarray(nib.load(paths["rootlets"]).dataobj)
    cord = np.asanyarray(nib.load(paths["cord"]).dataobj) > 0
    touching = np.where(ndimage.binary_dilation(cord, structure=morphology.ball(6)), rootlets, 0)
    assert sorted(table.index) == list(range(2, 10))
    for level in range(2, 10):
        z = np.argwhere(touching == level)[:, 2]
        assert (table.loc[level, "slice_start"], table.loc[level, "slice_end"]) == (z.max(), z.min()), level

    level_map = nib.load(tmp_path / "rootlets_spinal_levels.nii.gz")
    np.testing.assert_array_equal(level_map.affine, nib.load(paths["rootlets"]).affine)
    labelled = np.asanyarray(level_map.dataobj)
    assert not np.any(labelled[~cord]), "only the cord is labelled"
    for level in range(2, 9):  # each level occupies its own slices, except where the next level overlaps it
        z = np.unique(np.argwhere(labelled == level)[:, 2])
        assert z.max() == table.loc[level, "slice_start"]
        assert z.min() >= table.loc[level, "slice_end"]


def test_gapfree_levels_tile_the_cord(variants, rootlets_home, tmp_path):
    table = _levels(variants["RPI"], rootlets_home, tmp_path, "-method", "gapfree")
    assert list(table.spinal_level) == list(range(2, 10))
    assert (np.diff(table.slice_start) < 0).all(), "ordered rostro-caudally"
    np.testing.assert_array_equal(table.slice_start[1:].to_numpy(), table.slice_end[:-1].to_numpy() - 1)
    gaps_mm = table.distance_from_pmj_start[1:].to_numpy() - table.distance_from_pmj_end[:-1].to_numpy()
    assert ((gaps_mm > 0) & (gaps_mm < 0.6)).all(), "one 0.5 mm slice between consecutive levels"
    labelled = np.asanyarray(nib.load(tmp_path / "rootlets_spinal_levels.nii.gz").dataobj)
    z_with_level = np.unique(np.argwhere(labelled > 0)[:, 2])
    assert np.array_equal(z_with_level, np.arange(z_with_level.min(), z_with_level.max() + 1)), "no gap"


def test_same_levels_in_every_orientation_and_resolution(variants, rootlets_home, tmp_path):
    tables = {name: _levels(paths, rootlets_home, tmp_path / name) for name, paths in variants.items()}
    reference = tables["RPI"]
    for name in ("LPI", "PSR"):
        pd.testing.assert_frame_equal(tables[name], reference)
    coarse = tables["1mm"]
    assert list(coarse.spinal_level) == list(reference.spinal_level)
    for column in ("distance_from_pmj_start", "distance_from_pmj_end", "distance_from_pmj_midpoint"):
        np.testing.assert_allclose(coarse[column], reference[column], atol=1.0, err_msg=column)
    np.testing.assert_allclose(coarse.height, reference.height, atol=2.0)  # two ends, each within 1 mm


def test_only_declared_outputs_are_written(variants, rootlets_home, tmp_path):
    out = tmp_path / "out"
    paths = variants["PSR"]
    before = {p: p.read_bytes() for p in paths.values()}
    result = run_cli("-i", paths["rootlets"], "-s", paths["cord"], "-discs", paths["discs"], "-ofolder", out,
                     env_home=rootlets_home, command="sct_rootlets_levels")
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(out)) == ["rootlets_spinal_levels.csv", "rootlets_spinal_levels.nii.gz",
                                       "rootlets_spinal_vs_vertebral.csv", "rootlets_vertebral_levels.csv"]
    assert {p: p.read_bytes() for p in paths.values()} == before
    level_map = nib.load(out / "rootlets_spinal_levels.nii.gz")
    assert level_map.shape == nib.load(paths["rootlets"]).shape
    np.testing.assert_array_equal(level_map.affine, nib.load(paths["rootlets"]).affine)

    spinal = pd.read_csv(out / "rootlets_spinal_levels.csv")
    assert spinal.distance_from_pmj_start.isna().all() and spinal.height.notna().all()  # no PMJ given
    differences = pd.read_csv(out / "rootlets_spinal_vs_vertebral.csv")
    assert list(differences.level) == ["C2", "C3", "C4", "C5", "C6", "C7"]  # the crop ends above the T1/T2 disc
    assert differences.difference_mm.notna().all()

    again = run_cli("-i", paths["rootlets"], "-s", paths["cord"], "-ofolder", out, env_home=rootlets_home,
                    command="sct_rootlets_levels")
    assert again.returncode == 1 and "already exists; use -overwrite" in again.stderr


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    names = {"rootlets": "PAM50_small_rootlets", "cord": "PAM50_small_cord", "pmj": "PAM50_small_t2_pmj_manual",
             "discs": "PAM50_small_label_disc"}
    return {key: PAM50_SMALL / f"{name}.nii.gz" for key, name in names.items()}


def test_pmj_distances_follow_the_cord(small, rootlets_home, tmp_path):
    result = run_cli("-i", small["rootlets"], "-s", small["cord"], "-pmj", small["pmj"], "-discs", small["discs"],
                     "-ofolder", tmp_path, env_home=rootlets_home, command="sct_rootlets_levels")
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(tmp_path / "PAM50_small_rootlets_spinal_levels.csv")
    assert list(table.spinal_level) == sorted(table.spinal_level) and len(table) >= 5
    assert (np.diff(table.distance_from_pmj_start) > 0).all() and (np.diff(table.distance_from_pmj_end) > 0).all()
    assert (table.distance_from_pmj_end > table.distance_from_pmj_start).all()

    # Independent arc length: straight from the PMJ to the top cord centroid, then centroid to centroid.
    cord_image = nib.load(small["cord"])
    cord, affine = np.asanyarray(cord_image.dataobj) > 0, cord_image.affine
    z_cord = [z for z in range(cord.shape[2]) if cord[:, :, z].any()]
    centroid = {z: affine[:3, :3] @ [*np.argwhere(cord[:, :, z]).mean(axis=0), z] + affine[:3, 3] for z in z_cord}
    pmj_ijk = np.argwhere(np.asanyarray(nib.load(small["pmj"]).dataobj) > 0).mean(axis=0)
    pmj = affine[:3, :3] @ pmj_ijk + affine[:3, 3]
    top = max(z_cord)

    def arc_from_pmj(z):
        steps = [np.linalg.norm(centroid[k] - centroid[k - 1]) for k in range(top, z, -1)]
        return np.linalg.norm(pmj - centroid[top]) + sum(steps)

    for row in table.itertuples():
        assert row.distance_from_pmj_start == pytest.approx(arc_from_pmj(row.slice_start), abs=1.0)
        assert row.distance_from_pmj_end == pytest.approx(arc_from_pmj(row.slice_end), abs=1.0)

    differences = pd.read_csv(tmp_path / "PAM50_small_rootlets_spinal_vs_vertebral.csv")
    vertebral = pd.read_csv(tmp_path / "PAM50_small_rootlets_vertebral_levels.csv").set_index("vertebral_level")
    spinal = table.set_index("spinal_level")
    assert list(differences.level) == [f"C{n}" for n in differences.spinal_level]
    for row in differences.itertuples():
        expected = (spinal.loc[row.spinal_level, "distance_from_pmj_midpoint"]
                    - vertebral.loc[row.vertebral_level, "distance_from_pmj_midpoint"])
        assert row.difference_mm == pytest.approx(expected, abs=0.011)  # CSV keeps 2 decimals


def test_inputs_on_different_grids_are_refused(small, variants, rootlets_home, tmp_path):
    result = run_cli("-i", small["rootlets"], "-s", variants["RPI"]["cord"], "-ofolder", tmp_path,
                     env_home=rootlets_home, command="sct_rootlets_levels")
    assert result.returncode == 1 and "is not on the voxel grid of" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and os.listdir(tmp_path) == []


def test_empty_cord_is_refused(small, rootlets_home, tmp_path):
    cord = nib.load(small["cord"])
    empty = tmp_path / "empty_cord.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(cord.shape, np.uint8), cord.affine), empty)
    result = run_cli("-i", small["rootlets"], "-s", empty, "-ofolder", tmp_path / "out", env_home=rootlets_home,
                     command="sct_rootlets_levels")
    assert result.returncode == 1 and "The cord mask" in result.stderr and "is empty" in result.stderr
    assert not (tmp_path / "out").exists()
