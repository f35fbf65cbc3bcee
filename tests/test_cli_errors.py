"""Every input a user can get wrong, through the real command line: one sentence on stderr, a non-zero exit,
and no output file left behind."""

import gzip
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import ras_image, run_cli


def _save(image, path: Path) -> Path:
    nib.save(image, path)
    return path


def missing(folder):
    return folder / "nothing_here.nii.gz"


def text_file(folder):
    path = folder / "notes.txt"
    path.write_text("not an image")
    return path


def random_bytes_nifti(folder):
    path = folder / "random.nii"
    path.write_bytes(np.random.default_rng(0).bytes(4000))
    return path


def truncated_gz(folder):
    path = _save(ras_image(), folder / "full.nii.gz")
    cut = folder / "truncated.nii.gz"
    cut.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    path.unlink()
    return cut


def truncated_nii(folder):
    path = _save(ras_image(), folder / "full.nii")
    cut = folder / "truncated.nii"
    cut.write_bytes(path.read_bytes()[:2000])
    path.unlink()
    return cut


def image_2d(folder):
    return _save(nib.Nifti1Image(np.ones((20, 20), np.int16), np.eye(4)), folder / "flat.nii.gz")


def single_slice(folder):
    return _save(nib.Nifti1Image(np.ones((20, 20, 1), np.int16), np.eye(4)), folder / "slice.nii.gz")


def image_4d(folder):
    return _save(nib.Nifti1Image(np.ones((10, 10, 10, 3), np.int16), np.eye(4)), folder / "fmri.nii.gz")


def all_zero(folder):
    return _save(nib.Nifti1Image(np.zeros((10, 10, 10), np.int16), np.eye(4)), folder / "zeros.nii.gz")


def with_nan(folder):
    data = np.ones((10, 10, 10), np.float32)
    data[3, 4, 5] = np.nan
    return _save(nib.Nifti1Image(data, np.eye(4)), folder / "nan.nii.gz")


def with_inf(folder):
    data = np.ones((10, 10, 10), np.float32)
    data[1, 1, 1] = np.inf
    return _save(nib.Nifti1Image(data, np.eye(4)), folder / "inf.nii.gz")


def singular_affine(folder):
    image = nib.Nifti1Image(np.ones((10, 10, 10), np.int16), None)
    affine = np.eye(4)
    affine[:3, 2] = affine[:3, 0]  # z axis parallel to x
    image.set_qform(None, code=0)
    image.set_sform(affine, code=2)
    return _save(image, folder / "singular.nii.gz")


def huge_header(folder):
    """A tiny file whose header claims 30000^3 voxels: must be refused before any allocation."""
    path = _save(nib.Nifti1Image(np.ones((4, 4, 4), np.uint8), np.eye(4)), folder / "huge.nii")
    raw = bytearray(path.read_bytes())
    raw[42:48] = np.array([30000, 30000, 30000], "<i2").tobytes()  # dim[1..3] of the NIfTI-1 header
    path.write_bytes(bytes(raw))
    return path


def absurd_voxels(folder):
    """1000 mm voxels: resampled to the model's voxel size, far more than any machine's memory."""
    return _save(ras_image(zooms=(1000.0, 1000.0, 1000.0)), folder / "metres.nii.gz")


def a_folder(folder):
    (folder / "sub-01").mkdir()
    return folder / "sub-01"


BAD_INPUTS = {
    missing: "does not exist",
    a_folder: "is a folder; give a NIfTI image (.nii or .nii.gz) inside it",
    text_file: "is not a NIfTI image",
    random_bytes_nifti: "is not a NIfTI image",
    truncated_gz: "truncated or corrupt",
    truncated_nii: "truncated or corrupt",
    image_2d: "a 3D image is required",
    single_slice: "is 2D",
    image_4d: "4D with 3 volumes",
    all_zero: "contains only zeros",
    with_nan: "NaN or infinite",
    with_inf: "NaN or infinite",
    singular_affine: "non-invertible",
    huge_header: "the header is corrupt",
}


def _assert_clean_failure(result, expected: str, folder: Path, before: set):
    assert result.returncode == 1, "README: bad input is one sentence on stderr and exit code 1"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sct_deepseg_rootlets: error: ") and expected in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    assert set(os.listdir(folder)) == before, "a failed run must leave nothing behind"


@pytest.mark.parametrize("make_input", list(BAD_INPUTS), ids=lambda f: f.__name__)
def test_bad_input_image(make_input, tmp_path, tiny_model_root, rootlets_home):
    folder = tmp_path / "data"
    folder.mkdir()
    path = make_input(folder)
    before = set(os.listdir(folder))
    result = run_cli("-i", path, "-model", tiny_model_root, "-device", "cpu", env_home=rootlets_home)
    _assert_clean_failure(result, BAD_INPUTS[make_input], folder, before)


def test_one_bad_input_among_good_ones_writes_nothing(tmp_path, tiny_model_root, rootlets_home):
    good = _save(ras_image(), tmp_path / "good.nii.gz")
    bad = all_zero(tmp_path)
    before = set(os.listdir(tmp_path))
    result = run_cli("-i", good, bad, "-model", tiny_model_root, env_home=rootlets_home)
    _assert_clean_failure(result, "contains only zeros", tmp_path, before)


@pytest.fixture
def good_image(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    return _save(ras_image(), folder / "sub-01_T2w.nii.gz")


def test_unknown_model_name(good_image, rootlets_home):
    before = set(os.listdir(good_image.parent))
    result = run_cli("-i", good_image, "-model", "no-such-model", env_home=rootlets_home)
    _assert_clean_failure(result, "Unknown model 'no-such-model'", good_image.parent, before)


def test_model_folder_without_checkpoints(good_image, tmp_path, tiny_trainer_dir, rootlets_home):
    empty_model = tmp_path / "model" / tiny_trainer_dir.name
    empty_model.mkdir(parents=True)
    for name in ("dataset.json", "plans.json"):
        (empty_model / name).write_bytes((tiny_trainer_dir / name).read_bytes())
    (empty_model / "fold_0").mkdir()
    before = set(os.listdir(good_image.parent))
    result = run_cli("-i", good_image, "-model", tmp_path / "model", env_home=rootlets_home)
    _assert_clean_failure(result, "has no checkpoint", good_image.parent, before)


def test_no_model_installed_says_how_to_install(rootlets_home, monkeypatch):
    """Without the bundled offline model (see test_starter_model for the case with it)."""
    from sct_rootlets.store import registry
    from sct_rootlets.errors import ModelError
    from sct_rootlets.store.resolve import resolve_model

    monkeypatch.setattr(registry, "offline_default_card", lambda: None)
    with pytest.raises(ModelError, match="install the default one with: sct_deepseg_rootlets -install"):
        resolve_model(None)


def test_output_folder_not_writable(good_image, tiny_model_root, tmp_path, rootlets_home):
    if os.geteuid() == 0:
        target = Path("/sys/sct_rootlets_out.nii.gz")  # sysfs refuses new files even to root
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        target = locked / "out.nii.gz"
    before = set(os.listdir(good_image.parent))
    result = run_cli("-i", good_image, "-o", target, "-model", tiny_model_root, env_home=rootlets_home)
    _assert_clean_failure(result, "is not writable", good_image.parent, before)
    assert not target.exists()


def test_existing_output_is_kept_without_overwrite(good_image, tiny_model_root, rootlets_home):
    output = good_image.parent / "sub-01_T2w_rootlets.nii.gz"
    output.write_bytes(b"precious")
    before = set(os.listdir(good_image.parent))
    result = run_cli("-i", good_image, "-model", tiny_model_root, env_home=rootlets_home)
    _assert_clean_failure(result, "already exists; use -overwrite", good_image.parent, before)
    assert output.read_bytes() == b"precious"

    result = run_cli("-i", good_image, "-model", tiny_model_root, "-overwrite", "-v", "0", env_home=rootlets_home)
    assert result.returncode == 0, result.stderr
    assert nib.load(output).shape == nib.load(good_image).shape


def test_output_may_not_overwrite_the_input_even_with_overwrite(good_image, tiny_model_root, rootlets_home):
    original = good_image.read_bytes()
    before = set(os.listdir(good_image.parent))
    result = run_cli("-i", good_image, "-o", good_image, "-overwrite", "-model", tiny_model_root,
                     env_home=rootlets_home)
    _assert_clean_failure(result, "would overwrite an input", good_image.parent, before)
    assert good_image.read_bytes() == original


def test_gzip_header_survives_but_data_is_cut(tmp_path, tiny_model_root, rootlets_home):
    """A .nii.gz cut just after its header: the header reads, the voxels do not."""
    full = gzip.decompress(_save(ras_image(), tmp_path / "full.nii.gz").read_bytes())
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(gzip.compress(full[:400]))
    (tmp_path / "full.nii.gz").unlink()
    before = set(os.listdir(tmp_path))
    result = run_cli("-i", cut, "-model", tiny_model_root, env_home=rootlets_home)
    _assert_clean_failure(result, "truncated or corrupt", tmp_path, before)


def test_unavailable_gpu_is_a_clear_error(good_image, tiny_model_root, rootlets_home):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    before = set(os.listdir(good_image.parent))
    result = run_cli("-i", good_image, "-model", tiny_model_root, "-device", "cuda:0", env_home=rootlets_home)
    _assert_clean_failure(result, "no CUDA GPU is available; use -device cpu", good_image.parent, before)


def test_sct_installed_model_folder_is_accepted(good_image, tiny_model_root, tmp_path, rootlets_home):
    """SCT keeps the unpacked release under deepseg_models/model_seg_spinal_rootlets_nnunet/."""
    sct_folder = tmp_path / "sct" / "data" / "deepseg_models" / "model_seg_spinal_rootlets_nnunet"
    sct_folder.parent.mkdir(parents=True)
    os.symlink(tiny_model_root, sct_folder)
    result = run_cli("-i", good_image, "-model", sct_folder, "-v", "0", env_home=rootlets_home)
    assert result.returncode == 0, result.stderr
    assert (good_image.parent / "sub-01_T2w_rootlets.nii.gz").is_file()


def test_absurd_voxel_size_is_refused_before_resampling(tmp_path, tiny_model_root, rootlets_home):
    """Checked once the model's voxel size is known (after loading it, hence -v 0 to hide the progress lines)."""
    path = absurd_voxels(tmp_path)
    before = set(os.listdir(tmp_path))
    result = run_cli("-i", path, "-model", tiny_model_root, "-device", "cpu", "-region", "whole", "-v", "0",
                     env_home=rootlets_home)
    _assert_clean_failure(result, "resampled to the model's 0.8x0.8x0.8 mm voxels it would need about", tmp_path,
                          before)
    assert "GiB of memory, more than this machine's" in result.stderr
    by_default = run_cli("-i", path, "-model", tiny_model_root, "-device", "cpu", "-v", "0", env_home=rootlets_home)
    _assert_clean_failure(by_default, "resampled to the model's 1.25x1.25x1.25 mm voxels", tmp_path,
                          before | {rootlets_home.name})  # the cord model (its step comes first) is installed there


def test_3d_image_with_trailing_singleton_dimensions_is_segmented(tmp_path, tiny_model_root, rootlets_home):
    """(x, y, z, 1, 1) is a 3D image stored with two extra length-1 axes: segmented as 3D on its own grid."""
    reference = ras_image()
    image = nib.Nifti1Image(np.asanyarray(reference.dataobj)[..., np.newaxis, np.newaxis], reference.affine)
    path = _save(image, tmp_path / "sub-01_T2w.nii.gz")
    result = run_cli("-i", path, "-model", tiny_model_root, "-device", "cpu", "-v", "0", env_home=rootlets_home)
    assert result.returncode == 0, result.stderr
    labels = nib.load(tmp_path / "sub-01_T2w_rootlets.nii.gz")
    assert labels.shape == reference.shape and np.allclose(labels.affine, reference.affine)
