"""The synthetic-data engine: reproducible, labels exactly where strands are, every level, options in headers;
it runs on the PAM50 maps shipped with the package (the PMJ point and SCT's own copy come from ../shared)."""

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from conftest import SHARED_DATA, run_cli
from sct_rootlets.synthetic.render import LABEL_MIN_COVERAGE, SHIPPED_PAM50, SynthOptions, generate_case, load_template

PAM50 = SHARED_DATA / "pam50"
PMJ = SHARED_DATA / "pam50_small" / "PAM50_small_t2_pmj_manual.nii.gz"
needs_pmj = pytest.mark.skipif(not PMJ.is_file(), reason="../shared/data/pam50_small (PMJ point) is absent")
SMALL = SynthOptions(shape=(48, 90, 280), voxel_size=(0.8, 0.8, 0.8))


@pytest.fixture(scope="module")
def template():
    return load_template()


def test_shipped_maps_are_what_they_say(caplog):
    """Only the maps load_template reads ship, with the LGPL-3.0 license and citation beside them."""
    shipped = sorted(p.name for p in SHIPPED_PAM50.glob("*.nii.gz"))
    assert shipped == [f"PAM50_{n}.nii.gz" for n in ("cord", "csf", "gm", "label_disc", "rootlets", "spine")]
    assert "LGPL-3.0" in (SHIPPED_PAM50 / "LICENSE").read_text()
    assert "GNU LESSER GENERAL PUBLIC LICENSE" in (SHIPPED_PAM50 / "COPYING.LESSER").read_text()
    assert "De Leener" in (SHIPPED_PAM50 / "CITATION").read_text()
    with caplog.at_level("INFO", logger="sct_rootlets.synthetic.render"):
        load_template()
    assert "PAM50 label maps: the copy shipped with sct_rootlets" in caplog.text


@pytest.mark.skipif(not PAM50.is_dir(), reason="../shared/data/pam50 is absent")
def test_shipped_maps_equal_scts_copy(template):
    given = load_template(PAM50)
    for name in ("tissues", "zones", "discs", "affine"):
        np.testing.assert_array_equal(getattr(template, name), getattr(given, name))


def test_same_seed_same_volume_other_seed_other_volume(template):
    first, again, other = (generate_case(template, seed, SMALL) for seed in (7, 7, 8))
    np.testing.assert_array_equal(first.image, again.image)
    np.testing.assert_array_equal(first.rootlets, again.rootlets)
    assert not np.array_equal(first.image, other.image)
    assert not np.array_equal(first.rootlets, other.rootlets)


def test_random_contrast_draws_tissue_intensities_in_any_order(template):
    """-random-contrast (SynthSeg-style): the same anatomy as the T2w-like volume of that seed, but the cord is
    brighter than the CSF in some volumes (never in T2w-like ones, where the CSF is the brightest tissue)."""
    import dataclasses

    t2w_like = SynthOptions(shape=(32, 40, 100), voxel_size=(1.0, 1.0, 1.0))
    random_contrast = dataclasses.replace(t2w_like, random_contrast=True)
    brighter_cord = 0
    for seed in range(6):
        t2w, any_contrast = generate_case(template, seed, t2w_like), generate_case(template, seed, random_contrast)
        np.testing.assert_array_equal(t2w.cord, any_contrast.cord)
        np.testing.assert_array_equal(t2w.rootlets, any_contrast.rootlets)
        csf = (ndimage.binary_dilation(t2w.cord > 0, iterations=2) & (t2w.cord == 0)
               & (t2w.rootlets == 0))  # a ring around the cord: CSF in PAM50's canal
        assert t2w.image[t2w.cord > 0].mean() < t2w.image[csf].mean()
        brighter_cord += any_contrast.image[any_contrast.cord > 0].mean() > any_contrast.image[csf].mean()
    assert 1 <= brighter_cord <= 5


@needs_pmj
def test_labels_are_levels_exactly_where_strands_are():
    case = generate_case(load_template(pmj_label=PMJ), 3, SMALL)
    assert set(np.unique(case.rootlets)) <= {0, *range(2, 10)}
    np.testing.assert_array_equal(case.rootlets > 0, case.coverage >= LABEL_MIN_COVERAGE)
    assert set(np.unique(case.rootlets)) == {0, *range(2, 10)}, "C2..T1 all inside this field of view"
    inside = case.rootlets > 0
    assert (inside & (case.cord > 0)).sum() < 0.1 * inside.sum(), "strands run outside the cord"
    darker = case.image[inside & (case.coverage > 0.5)].mean() < np.percentile(case.image[~inside], 99)
    assert darker, "rootlets are darker than the bright CSF around them"
    levels = {lv: np.argwhere(case.rootlets == lv)[:, 2].mean() for lv in range(2, 10)}
    assert all(levels[lv] > levels[lv + 1] for lv in range(2, 9)), "levels run rostro-caudally"
    assert set(np.unique(case.discs)) > {0, 3, 4} and case.pmj is not None


def test_command_honours_voxel_size_and_orientation(tmp_path, rootlets_home):
    result = run_cli("-o", tmp_path / "ds", "-n", "2", "-seed", "5",
                     "-voxel-size", "1x0.9x1.2", "-shape", "40x80x200", "-orientation", "PSR",
                     env_home=rootlets_home, command="sct_rootlets_synth")
    assert result.returncode == 0, result.stderr
    assert "PAM50 label maps: the copy shipped with sct_rootlets" in result.stderr
    assert "generating: 100%" in result.stderr and "2/2" in result.stderr, "a progress bar"
    for subject in ("sub-001", "sub-002"):
        image = nib.load(tmp_path / "ds" / subject / "anat" / f"{subject}_T2w.nii.gz")
        labels = nib.load(tmp_path / "ds" / "derivatives" / "labels" / subject / "anat" /
                          f"{subject}_T2w_label-rootlets_dseg.nii.gz")
        assert nib.aff2axcodes(image.affine) == ("A", "I", "L")      # SCT PSR
        assert image.shape == (80, 200, 40)
        np.testing.assert_allclose(image.header.get_zooms(), (0.9, 1.2, 1.0), atol=1e-6)
        np.testing.assert_array_equal(labels.affine, image.affine)
        assert image.get_data_dtype() == np.int16 and labels.get_data_dtype() == np.uint8
    refused = run_cli("-pam50", tmp_path, "-o", tmp_path / "other", env_home=rootlets_home,
                      command="sct_rootlets_synth")
    assert refused.returncode == 1 and "PAM50_rootlets.nii.gz is missing" in refused.stderr
    assert f"PAM50 label maps: the given folder ({tmp_path})" in refused.stderr


def test_chunks_add_subjects_and_never_replace_them_silently(tmp_path, rootlets_home):
    """Generating in chunks (-first-subject) gives the volumes one run with the same first seed gives."""
    common = ("-shape", "24x48x96", "-o")
    whole = run_cli(*common, tmp_path / "whole", "-n", "2", "-seed", "40", env_home=rootlets_home,
                    command="sct_rootlets_synth")
    assert whole.returncode == 0, whole.stderr
    for first, seed in ((1, "40"), (2, "41")):
        chunk = run_cli(*common, tmp_path / "chunks", "-n", "1", "-seed", seed, "-first-subject", str(first),
                        env_home=rootlets_home, command="sct_rootlets_synth")
        assert chunk.returncode == 0, chunk.stderr
    for subject in ("sub-001", "sub-002"):
        name = f"{subject}/anat/{subject}_T2w.nii.gz"
        np.testing.assert_array_equal(nib.load(tmp_path / "whole" / name).get_fdata(),
                                      nib.load(tmp_path / "chunks" / name).get_fdata())
    again = run_cli(*common, tmp_path / "chunks", "-n", "2", "-seed", "7", "-first-subject", "2",
                    env_home=rootlets_home, command="sct_rootlets_synth")
    assert again.returncode == 1 and "already holds sub-002" in again.stderr
    assert not (tmp_path / "chunks" / "sub-003").exists()
