"""Generated rootlets drawn into real scans (sct_rootlets.implant): CSF found, own rootlets removed, labels placed
per level between the landmarks, cases written as BIDS sessions."""

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from conftest import SHARED_DATA, run_cli
from sct_rootlets.synthetic.bands import UNLABELLED_LEVELS, level_bands
from sct_rootlets.synthetic.canal import csf_mask, without_own_rootlets
from sct_rootlets.synthetic.implant import implant, implant_dataset
from sct_rootlets.synthetic.render import load_template

CORD, CSF, TISSUE = 250.0, 800.0, 120.0
C2_S, T2_S = 50.0, -50.0


def _phantom(shape=(40, 40, 150), seed=0):
    """RAS 1 mm: a cord (radius 4 mm) in a CSF sleeve (out to 8 mm) in tissue, running inferior-superior, with
    noise; world superior coordinate = voxel index - 75."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.arange(shape[0]) - 20, np.arange(shape[1]) - 20, indexing="ij")
    radius = np.hypot(x, y)[..., None] * np.ones(shape[2])
    cord = radius <= 4
    data = np.where(cord, CORD, np.where(radius <= 8, CSF, TISSUE)) + rng.normal(0, 15, shape)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = (-20, -20, -75)
    return data.astype(np.float32), cord, affine, radius


def test_bands_run_from_c1_to_t3_between_the_vertebral_centres():
    bands = level_bands(load_template())
    assert [b.level for b in bands] == list(range(1, 12))
    assert [b.level for b in bands if not b.labelled] == list(UNLABELLED_LEVELS)
    assert all(b.top < b.bottom for b in bands)
    assert all(a.top < b.top for a, b in zip(bands, bands[1:])), "rostral to caudal"
    c2, t1 = bands[1], bands[8]
    assert -0.25 < c2.top < 0 and 0.5 < t1.bottom < 1, "C2 rootlets above the C2 body, T1 above the T2 body"
    low, high = c2.superior_range_mm(C2_S, T2_S)
    assert C2_S < low < high < C2_S + 25


def test_csf_is_the_bright_sleeve_and_own_rootlets_are_removed():
    data, cord, _, radius = _phantom()
    strand = (np.abs(np.arange(40) - 26)[:, None, None] <= 0) & (np.abs(np.arange(40) - 20)[None, :, None] <= 0)
    strand = strand & (np.arange(150) > 30)[None, None, :]  # a 1-voxel dark strand 6 mm right of the centre
    data[strand] = CORD
    csf = csf_mask(data, cord, (1.0, 1.0, 1.0))
    sleeve = (radius > 4) & (radius <= 8)
    assert (csf & sleeve).sum() / sleeve.sum() > 0.85
    assert not (csf & (radius > 9)).any() and not (csf & cord).any()
    cleaned = without_own_rootlets(np.random.default_rng(0), data, csf)
    assert np.median(data[strand]) < 300 and np.median(cleaned[strand]) > 0.8 * CSF
    far = radius > 11
    np.testing.assert_array_equal(cleaned[far], data[far])


def test_implanted_rootlets_lie_in_the_csf_in_their_level_bands_and_darken_it():
    data, cord, affine, radius = _phantom()
    original = data.copy()
    bands = level_bands(load_template())
    image, labels = implant(np.random.default_rng(4), data, cord, affine, C2_S, T2_S, bands)
    np.testing.assert_array_equal(data, original)
    assert set(np.unique(labels)) == {0, *range(2, 10)}, "every level C2..T1 (2..9) is drawn, C1/T2/T3 unlabelled"
    for level in range(2, 10):  # "in each quarter of the CSF (left/right x dorsal/ventral)"
        x, y, _ = np.nonzero(labels == level)
        quarters = {(a, b) for a, b in zip(np.sign(x - 20), np.sign(y - 20)) if a and b}
        assert quarters == {(-1, -1), (-1, 1), (1, -1), (1, 1)}, (level, quarters)
    labelled = labels > 0
    assert (labelled & (radius > 3.5) & (radius <= 9)).sum() / labelled.sum() > 0.95
    assert image[labelled].mean() < 0.8 * CSF
    superior = np.arange(150) - 75.0
    for band in bands:
        if band.labelled and (labels == band.level).any():
            low, high = band.superior_range_mm(C2_S, T2_S)
            z = superior[np.argwhere(labels == band.level)[:, 2]]
            margin = 0.03 * (C2_S - T2_S) + 8  # random band shift, strands running caudally past the band
            assert z.min() > low - margin and z.max() < high + margin, band
    below_t1 = superior < bands[8].superior_range_mm(C2_S, T2_S)[0] - 10
    unlabelled_dark = (image < 0.6 * CSF) & (radius > 5) & (radius < 7.5) & below_t1[None, None, :]
    assert unlabelled_dark.any() and not (labels[unlabelled_dark] > 0).any(), "T2/T3 rootlets drawn, not labelled"
    again, again_labels = implant(np.random.default_rng(4), data, cord, affine, C2_S, T2_S, bands)
    np.testing.assert_array_equal(again, image)
    np.testing.assert_array_equal(again_labels, labels)


def _bids(root, with_landmarks=True):
    data, cord, affine, _ = _phantom()
    stored = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], float)  # axes stored S, A, R
    stored_affine = affine @ stored
    anat, labels = root / "sub-p" / "anat", root / "derivatives" / "labels" / "sub-p" / "anat"
    anat.mkdir(parents=True)
    labels.mkdir(parents=True)
    nib.save(nib.Nifti1Image(np.transpose(data, (2, 1, 0)).astype(np.int16), stored_affine), anat / "sub-p_T2w.nii.gz")
    nib.save(nib.Nifti1Image(np.transpose(cord, (2, 1, 0)).astype(np.uint8), stored_affine),
             labels / "sub-p_T2w_label-SC_seg.nii.gz")
    if with_landmarks:
        points = np.zeros(cord.shape, np.uint8)
        points[20, 24, int(C2_S + 75)], points[20, 24, int(T2_S + 75)] = 2, 9
        nib.save(nib.Nifti1Image(np.transpose(points, (2, 1, 0)), stored_affine),
                 labels / "sub-p_T2w_desc-vertcentre_dlabel.nii.gz")
    return root


def test_implant_dataset_writes_labelled_sessions_on_the_scans_world_grid(tmp_path):
    source = _bids(tmp_path / "src")
    written = implant_dataset(source, tmp_path / "out", count=2, seed=1)
    assert [p.parts[-3] for p in written] == ["ses-implant01", "ses-implant02"]
    scan = nib.load(source / "sub-p" / "anat" / "sub-p_T2w.nii.gz")
    for path in written:
        image = nib.load(path)
        labels = tmp_path / "out" / "derivatives" / "labels" / "sub-p" / path.parts[-3] / "anat"
        rootlets = nib.load(labels / path.name.replace("_T2w.nii.gz", "_T2w_label-rootlets_dseg.nii.gz"))
        cord = nib.load(labels / path.name.replace("_T2w.nii.gz", "_T2w_label-SC_seg.nii.gz"))
        assert nib.aff2axcodes(image.affine) == ("R", "A", "S")
        np.testing.assert_allclose(image.affine, nib.as_closest_canonical(scan).affine)
        np.testing.assert_allclose(rootlets.affine, image.affine)
        assert cord.shape == image.shape and np.asarray(rootlets.dataobj).max() <= 9
        assert np.asarray(rootlets.dataobj).any()
    first = np.asarray(nib.load(written[0]).dataobj)
    assert not np.array_equal(first, np.asarray(nib.load(written[1]).dataobj)), "each case draws anew"


def test_implant_command_needs_landmarks_and_keeps_existing_cases(tmp_path, rootlets_home):
    bare = _bids(tmp_path / "bare", with_landmarks=False)
    result = run_cli("implant", "-path-data", bare, "-o", tmp_path / "none", "-n", "1",
                     env_home=rootlets_home, command="sct_rootlets_dataset")
    assert result.returncode == 1 and "_desc-vertcentre_dlabel landmarks" in result.stderr
    assert not (tmp_path / "none").exists()
    source = _bids(tmp_path / "src")
    args = ("implant", "-path-data", source, "-o", tmp_path / "out", "-n", "1", "-seed", "2")
    assert run_cli(*args, env_home=rootlets_home, command="sct_rootlets_dataset").returncode == 0
    again = run_cli(*args, env_home=rootlets_home, command="sct_rootlets_dataset")
    assert again.returncode == 1 and "already exists; use -overwrite" in again.stderr


@pytest.mark.skipif(not (SHARED_DATA / "real_bids").is_dir(), reason="../shared/data/real_bids is not present")
def test_a_real_scan_gets_rootlets_beside_its_manual_cord_between_c2_and_t2(tmp_path):
    written = implant_dataset(SHARED_DATA / "real_bids", tmp_path / "out", count=1, seed=9)
    path = next(p for p in written if "errsm21" in p.name)
    labels_folder = tmp_path / "out" / "derivatives" / "labels" / "sub-errsm21" / "ses-implant01" / "anat"
    rootlets = nib.load(labels_folder / path.name.replace("_T2w.nii.gz", "_T2w_label-rootlets_dseg.nii.gz"))
    cord = np.asarray(nib.load(labels_folder / path.name.replace("_T2w.nii.gz", "_T2w_label-SC_seg.nii.gz"))
                      .dataobj) > 0
    labels = np.asarray(rootlets.dataobj)
    assert set(np.unique(labels)) == {0, *range(2, 10)}
    distance = ndimage.distance_transform_edt(~cord, sampling=rootlets.header.get_zooms()[:3])
    # strands start at the cord's surface, so partial volume puts a few labelled voxels inside the manual mask
    assert np.mean((distance[labels > 0] > 0) & (distance[labels > 0] <= 15)) > 0.9
    superior = (rootlets.affine @ np.c_[np.argwhere(labels > 0), np.ones((labels > 0).sum())].T)[2]
    c2, t2 = 57.1, -62.9  # sub-errsm21's C2 and T2 vertebral centres (superior mm)
    assert np.mean((superior <= c2 + 20) & (superior >= t2)) > 0.9
