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


# Outputs of commit 0bc30a0 (before the one-pass centerline, box-limited distance maps and level maps of issue 20),
# written by `sct_rootlets_levels` and `sct_deepseg_rootlets -s`: the same inputs must give the same CSVs. Heights
# and PMJ distances near the cord's ends are those of the centerline smoothing that keeps straight ends straight
# (they were up to 2 mm short before; each checked against slices x thickness where the cord runs straight, e.g.
# PAM50's vertebral level 20, slices 106..39 at 0.5 mm: 33.51 mm, was 31.52).
PAM50_SPINAL_EXTENT = """\
2,964,953,5.50,958.50
3,938,908,15.00,923.00
4,901,880,10.50,890.50
5,868,850,9.00,859.00
6,835,817,9.00,826.00
7,804,784,10.00,794.00
8,774,751,11.50,762.50
9,739,714,12.50,726.50"""
PAM50_SPINAL_GAPFREE = """\
2,964,953,5.50,958.50
3,952,908,22.00,930.00
4,907,880,13.50,893.50
5,879,850,14.50,864.50
6,849,817,16.00,833.00
7,816,784,16.00,800.00
8,783,751,16.00,767.00
9,750,714,18.00,732.00"""
PAM50_DIFFERENCES_EXTENT = """\
level,spinal_level,vertebral_level,spinal_midpoint_mm,vertebral_midpoint_mm,difference_mm
C2,2,2,15.79,33.29,-17.50
C3,3,3,33.54,50.29,-16.75
C4,4,4,49.79,68.79,-19.00
C5,5,5,65.54,86.29,-20.75
C6,6,6,82.04,102.29,-20.25
C7,7,7,98.04,118.54,-20.50
T1,9,8,131.79,137.79,-6.00
"""
PAM50_VERTEBRAL = """\
1,985,939,23.03,962.00
2,939,908,15.50,923.50
3,908,871,18.50,889.50
4,871,834,18.50,852.50
5,834,801,16.50,817.50
6,801,770,15.50,785.50
7,770,736,17.00,753.00
8,736,693,21.50,714.50
9,693,647,23.00,670.00
10,647,601,23.00,624.00
11,601,552,24.50,576.50
12,552,501,25.50,526.50
13,501,450,25.50,475.50
14,450,397,26.50,423.50
15,397,343,27.00,370.00
16,343,290,26.50,316.50
17,290,232,29.00,261.00
18,232,169,31.50,200.50
19,169,106,31.51,137.50
20,106,39,33.51,72.50"""
#: with a one-voxel PMJ in the cord at voxel (70, 71, 980): level, start, end, distances start/end, height,
#: midpoint slice and distance
PAM50_SPINAL_PMJ = """\
2,964,953,8.02,13.52,5.50,958.50,10.77
3,938,908,21.02,36.02,15.00,923.00,28.52
4,901,880,39.52,50.02,10.50,890.50,44.77
5,868,850,56.02,65.02,9.00,859.00,60.52
6,835,817,72.52,81.52,9.00,826.00,77.02
7,804,784,88.02,98.02,10.00,794.00,93.02
8,774,751,103.02,114.52,11.50,762.50,108.77
9,739,714,120.52,133.02,12.50,726.50,126.77"""


def _rows(csv_path, name, columns) -> str:
    """The CSV's rows as text, fname checked and left out: the given columns, or all the others."""
    lines = csv_path.read_text().splitlines()
    header = lines[0].split(",")
    assert header == [name, "fname", "slice_start", "slice_end", "distance_from_pmj_start", "distance_from_pmj_end",
                      "height", "slice_midpoint", "distance_from_pmj_midpoint"]
    keep = [header.index(column) for column in columns]
    return "\n".join(",".join(line.split(",")[i] for i in keep) for line in lines[1:])


NO_PMJ = ["slice_start", "slice_end", "height", "slice_midpoint"]
WITH_PMJ = [*NO_PMJ[:2], "distance_from_pmj_start", "distance_from_pmj_end", *NO_PMJ[2:], "distance_from_pmj_midpoint"]


def test_full_pam50_gives_todays_csvs(rootlets_home, tmp_path):
    """The whole template (0.5 mm, 991 slices), as the shipped files are: each method with discs, and a PMJ."""
    rootlets, cord, discs = (PAM50 / f"PAM50_{name}.nii.gz" for name in ("rootlets", "cord", "label_disc"))
    for method, spinal in (("extent", PAM50_SPINAL_EXTENT), ("gapfree", PAM50_SPINAL_GAPFREE)):
        out = tmp_path / method
        result = run_cli("-i", rootlets, "-s", cord, "-discs", discs, "-method", method, "-ofolder", out,
                         env_home=rootlets_home, command="sct_rootlets_levels")
        assert result.returncode == 0, result.stderr
        assert _rows(out / "PAM50_rootlets_spinal_levels.csv", "spinal_level", ["spinal_level", *NO_PMJ]) == spinal
        assert _rows(out / "PAM50_rootlets_vertebral_levels.csv", "vertebral_level",
                     ["vertebral_level", *NO_PMJ]) == PAM50_VERTEBRAL
    assert (tmp_path / "extent" / "PAM50_rootlets_spinal_vs_vertebral.csv").read_text() == PAM50_DIFFERENCES_EXTENT

    image = nib.load(cord)
    pmj = np.zeros(image.shape, np.uint8)
    pmj[70, 71, 980] = 1
    nib.save(nib.Nifti1Image(pmj, image.affine, image.header), tmp_path / "pmj.nii.gz")
    result = run_cli("-i", rootlets, "-s", cord, "-pmj", tmp_path / "pmj.nii.gz", "-ofolder", tmp_path / "pmj",
                     env_home=rootlets_home, command="sct_rootlets_levels")
    assert result.returncode == 0, result.stderr
    assert _rows(tmp_path / "pmj" / "PAM50_rootlets_spinal_levels.csv", "spinal_level",
                 ["spinal_level", *WITH_PMJ]) == PAM50_SPINAL_PMJ


REAL_BIDS = SHARED_DATA / "real_bids"
#: sub-errsm11 (1 mm PSR, manual cord mask), the bundled starter model in PyTorch (fp32: the same labels on any
#: CPU, unlike bfloat16), then levels with a one-voxel PMJ in the cord at voxel (196, 210, 26), gap-free
ERRSM11_SPINAL = """\
2,213,199,14.02,206.00
3,191,169,22.06,180.00
5,158,158,0.00,158.00
6,146,142,4.04,144.00
7,137,128,9.39,132.50
8,125,121,4.34,123.00
9,110,66,54.02,88.00"""
ERRSM11_SPINAL_PMJ_GAPFREE = """\
2,213,199,-3.00,11.02,14.02,206.00,4.01
3,198,169,12.03,41.13,29.10,183.50,26.58
5,168,158,42.13,52.13,10.00,163.00,47.13
6,157,142,53.13,68.21,15.08,149.50,60.67
7,141,128,69.22,82.67,13.45,134.50,75.94
8,127,121,83.73,90.23,6.49,124.00,86.98
9,120,66,91.32,156.57,65.25,93.00,123.95"""


@pytest.mark.skipif(not (REAL_BIDS / "sub-errsm11").is_dir(), reason="../shared/data/real_bids is not available")
def test_a_real_scan_gives_todays_csvs(rootlets_home, tmp_path):
    image = tmp_path / "sub-errsm11_T2w.nii.gz"
    image.write_bytes((REAL_BIDS / "sub-errsm11" / "anat" / "sub-errsm11_T2w.nii.gz").read_bytes())
    cord = REAL_BIDS / "derivatives/labels/sub-errsm11/anat/sub-errsm11_T2w_label-SC_seg.nii.gz"
    result = run_cli("-i", image, "-s", cord, "-engine", "torch", "-device", "cpu", env_home=rootlets_home)
    assert result.returncode == 0, result.stderr[-3000:]
    rootlets = tmp_path / "sub-errsm11_T2w_rootlets.nii.gz"
    assert _rows(tmp_path / "sub-errsm11_T2w_rootlets_spinal_levels.csv", "spinal_level",
                 ["spinal_level", *NO_PMJ]) == ERRSM11_SPINAL

    reference = nib.load(cord)
    pmj = np.zeros(reference.shape, np.uint8)
    pmj[196, 210, 26] = 1
    nib.save(nib.Nifti1Image(pmj, reference.affine, reference.header), tmp_path / "pmj.nii.gz")
    result = run_cli("-i", rootlets, "-s", cord, "-pmj", tmp_path / "pmj.nii.gz", "-method", "gapfree",
                     "-ofolder", tmp_path / "pmj", env_home=rootlets_home, command="sct_rootlets_levels")
    assert result.returncode == 0, result.stderr
    assert _rows(tmp_path / "pmj" / "sub-errsm11_T2w_rootlets_spinal_levels.csv", "spinal_level",
                 ["spinal_level", *WITH_PMJ]) == ERRSM11_SPINAL_PMJ_GAPFREE
