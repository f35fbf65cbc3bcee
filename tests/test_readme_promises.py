"""README promises that no other test held the code to (issue 22): each test names its README section, and its
expected values come from the README or are worked out here, never from the code's constants or outputs.

The map of every listed promise to its test is in tests/README.md.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

import tiny_model
from conftest import no_cord_t2w, ras_image, run_cli, synthetic_t2w
from test_batch import make_dataset
from test_inference import STOCK, stock_prediction

from sct_rootlets.errors import ModelError
from sct_rootlets.segment import segment_rootlets
from sct_rootlets.store.resolve import resolve_model


def _labels(path) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj)


def _sidecar(nifti: Path) -> dict:
    return json.loads(nifti.with_name(nifti.name.replace(".nii.gz", ".json")).read_text())


@pytest.fixture
def no_cord_image(tmp_path) -> Path:
    """A generated volume (a gradient, noise): no spine, so the cord model finds no cord."""
    path = tmp_path / "data" / "sub-01" / "anat" / "sub-01_T2w.nii.gz"
    path.parent.mkdir(parents=True)
    nib.save(ras_image(no_cord_t2w()), path)
    return path


# --- "Fast by default": without a cord ------------------------------------------------------------------------------

def test_without_a_cord_fast_and_exact_warn_and_predict_the_whole_image(no_cord_image, tiny_model_root, tmp_path,
                                                                       rootlets_home):
    """README: "Without a cord (the cord model finds none), fast and exact warn and predict the whole image"; the
    sidecar's cord_mask then says "Found": false."""
    outputs = {}
    for region in ("whole", "fast", "exact"):
        out = tmp_path / region / "out.nii.gz"
        result = run_cli("-i", no_cord_image, "-o", out, "-model", tiny_model_root, "-device", "cpu", "-engine",
                         "torch", "-region", region, "-v", "1", env_home=rootlets_home)
        assert result.returncode == 0, result.stderr
        outputs[region] = _labels(out)
        cord_mask = _sidecar(out)["Options"]["cord_mask"]
        if region == "whole":
            assert "No spinal cord was found" not in result.stderr, "whole needs no cord: none is looked for"
            continue
        assert f"No spinal cord was found in {no_cord_image}: the whole image is predicted." in result.stderr
        assert cord_mask["Found"] is False and cord_mask["Computed"] is True
        assert cord_mask["Model"] == "sct-rootlets-cord"
    assert len(np.unique(outputs["whole"])) >= 3, "a varied prediction, so a cropped one would differ"
    np.testing.assert_array_equal(outputs["fast"], outputs["whole"])
    np.testing.assert_array_equal(outputs["exact"], outputs["whole"])


@pytest.mark.parametrize("option", ["-max-distance-mm", "-pmj", "-discs"])
def test_without_a_cord_options_that_need_it_ask_for_s_in_one_sentence(option, no_cord_image, tiny_model_root,
                                                                       tmp_path, rootlets_home):
    """README: "options that need the cord (-max-distance-mm, levels) then stop with one sentence asking for -s";
    levels are asked for by -pmj or -discs (with -s they are computed from that mask)."""
    value = "5"
    if option != "-max-distance-mm":
        image = nib.load(no_cord_image)
        point = np.zeros(image.shape, np.uint8)
        point[16, 28, 20] = 1 if option == "-pmj" else 3
        value = tmp_path / "point.nii.gz"
        nib.save(nib.Nifti1Image(point, image.affine), value)
    out = tmp_path / "out" / "out.nii.gz"
    result = run_cli("-i", no_cord_image, "-o", out, "-model", tiny_model_root, "-device", "cpu", option, value,
                     "-v", "0", env_home=rootlets_home)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0] == (f"sct_deepseg_rootlets: error: No spinal cord was found in {no_cord_image}; give a cord "
                        f"mask with -s.")
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_a_batch_keeps_the_rootlets_of_an_image_without_a_cord_without_levels(tiny_model_root, tmp_path,
                                                                             rootlets_home):
    """README (Whole datasets): "an image in which no cord is found keeps its rootlets, without levels"."""
    dataset = make_dataset(tmp_path)
    out = tmp_path / "out"
    result = run_cli("-path-data", dataset, "-path-output", out, "-model", tiny_model_root, "-device", "cpu",
                     "-include", "sub-04", "-no-qc", "-v", "1", env_home=rootlets_home, command="sct_rootlets_batch")
    assert result.returncode == 0, result.stderr
    anat = out / "derivatives/labels/sub-04/anat"
    dseg = anat / "sub-04_T2w_label-rootlets_dseg.nii.gz"
    assert _labels(dseg).any()
    assert _sidecar(dseg)["Options"]["cord_mask"]["Found"] is False
    assert sorted(p.name for p in anat.iterdir()) == ["sub-04_T2w_label-rootlets_dseg.json",
                                                      "sub-04_T2w_label-rootlets_dseg.nii.gz"], "no levels"
    summary = pd.read_csv(out / "results/rootlets_summary.csv")
    assert len(summary) > 0 and summary.slice_start.isna().all(), "rows for the rootlets, no extents"
    assert set(summary.cord_mask) == {"not found"}, "the summary says which cord was used"


# --- Argument errors exit with code 2 -------------------------------------------------------------------------------

@pytest.mark.parametrize("command, args", [
    ("sct_deepseg_rootlets", ["-i", "a.nii.gz", "-no-such-option"]),
    ("sct_deepseg_rootlets", ["-i", "a.nii.gz", "-region", "everywhere"]),
    ("sct_deepseg_rootlets", ["-i", "a.nii.gz", "-threads", "two"]),
    ("sct_deepseg_rootlets", ["-i", "a.nii.gz", "-step-size"]),
    ("sct_rootlets_batch", ["-path-data", "ds", "-path-output", "out", "-jobs", "many"]),
    ("sct_rootlets_levels", ["-s", "seg.nii.gz"]),
    ("sct_rootlets_cord", ["-i", "a.nii.gz", "-device"]),
])
def test_argument_errors_exit_with_code_2(command, args, tmp_path, rootlets_home):
    """README (Bad input): "Argument errors exit with code 2", with the usage (argparse's convention)."""
    result = run_cli(*args, env_home=rootlets_home, cwd=tmp_path, command=command)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("usage: ") and result.stderr.strip().splitlines()[-1].startswith(
        f"{command}: error: ")
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


# --- Model folder rules ---------------------------------------------------------------------------------------------

def test_folds_all_is_used_when_alone_or_asked_for(tmp_path, rootlets_home):
    """README: "every numbered fold present is ensembled (fold_all is used when it is the only fold, or with
    -folds all)"; labels checked against the stock predictor on those folds."""
    image = tmp_path / "img.nii.gz"
    nib.save(ras_image(synthetic_t2w((32, 36, 20))), image)
    three = tiny_model.build_model_folder(tmp_path / "three", folds=("0", "1", "all"))
    only_all = tiny_model.build_model_folder(tmp_path / "only_all", folds=("all",))

    [plain] = segment_rootlets([image], output=tmp_path / "plain.nii.gz", model=str(tmp_path / "three"),
                               device="cpu", region="whole", postprocessing=STOCK)
    assert _sidecar(plain)["Options"]["folds"] == ["0", "1"]
    np.testing.assert_array_equal(_labels(plain), stock_prediction(three, nib.load(image), folds=(0, 1)))

    asked = tmp_path / "asked.nii.gz"
    result = run_cli("-i", image, "-o", asked, "-model", tmp_path / "three", "-folds", "all", "-device", "cpu",
                     "-region", "whole", "-order-levels", "0", "-v", "0", env_home=rootlets_home)
    assert result.returncode == 0, result.stderr
    assert _sidecar(asked)["Options"]["folds"] == ["all"]
    from_all = stock_prediction(three, nib.load(image), folds=("all",))
    np.testing.assert_array_equal(_labels(asked), from_all)
    assert not np.array_equal(from_all, _labels(plain)), "fold_all's weights differ from folds 0 and 1"

    [alone] = segment_rootlets([image], output=tmp_path / "alone.nii.gz", model=str(tmp_path / "only_all"),
                               device="cpu", region="whole", postprocessing=STOCK)
    assert _sidecar(alone)["Options"]["folds"] == ["all"]
    np.testing.assert_array_equal(_labels(alone), stock_prediction(only_all, nib.load(image), folds=("all",)))


@pytest.mark.parametrize("depth", [0, 1, 2, 3])
def test_the_trainer_folder_is_found_up_to_three_levels_down(depth, tmp_path):
    """README: "the single nnUNetTrainer*__* folder at or up to three levels below the given folder"."""
    given = tmp_path / "given"
    parent = given.joinpath(*[f"level{i}" for i in range(1, depth)]) if depth else None
    if depth == 0:
        trainer = tiny_model.build_model_folder(tmp_path / "build", folds=("0",))
        shutil.move(str(trainer), str(given))
        trainer = given
    else:
        trainer = parent / tiny_model.TRAINER_DIR
        built = tiny_model.build_model_folder(tmp_path / "build", folds=("0",))
        trainer.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(built), str(trainer))
    assert len(trainer.relative_to(given).parts) == depth
    assert resolve_model(str(given)).folder.trainer_dir == trainer


def test_a_trainer_folder_four_levels_down_is_not_found(tmp_path):
    given = tmp_path / "given"
    trainer = given / "a" / "b" / "c" / tiny_model.TRAINER_DIR
    built = tiny_model.build_model_folder(tmp_path / "build", folds=("0",))
    trainer.parent.mkdir(parents=True)
    shutil.move(str(built), str(trainer))
    with pytest.raises(ModelError, match="holds no nnU-Net trainer folders"):
        resolve_model(str(given))
    assert resolve_model(str(given / "a")).folder.trainer_dir == trainer, "three levels below a"


def test_two_trainer_folders_are_refused_in_one_sentence(tmp_path, rootlets_home):
    """README: "the single nnUNetTrainer*__* folder": with two, the user must say which (exit 1)."""
    tiny_model.build_model_folder(tmp_path / "model", folds=("0",))
    release = tmp_path / "model" / tiny_model.RELEASE_DIR
    shutil.copytree(release / tiny_model.TRAINER_DIR, release / "nnUNetTrainerDA5__nnUNetPlans__3d_fullres")
    image = tmp_path / "img.nii.gz"
    nib.save(ras_image(), image)
    result = run_cli("-i", image, "-model", tmp_path / "model", "-device", "cpu", "-v", "0", env_home=rootlets_home)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"sct_deepseg_rootlets: error: {tmp_path / 'model'} holds 2 nnU-Net trainer folders (nnUNetTrainer*__* "
        f"with plans.json and dataset.json); give the one model folder to use."]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.nii.gz", "model"]


# --- Devices and threads --------------------------------------------------------------------------------------------

def _threads_after_a_run(image: Path, model: Path, out: Path, threads, taskset=None) -> tuple:
    """(torch's thread count after segment_rootlets, the sidecar's threads), in a fresh process."""
    script = ("import sys, torch\nfrom pathlib import Path\nfrom sct_rootlets.segment import segment_rootlets\n"
              f"[out] = segment_rootlets([{str(image)!r}], output={str(out)!r}, model={str(model)!r}, device='cpu', "
              f"region='whole', threads={threads!r})\nprint(torch.get_num_threads())\n")
    command = [sys.executable, "-c", script]
    if taskset is not None:
        command = [shutil.which("taskset"), "-c", taskset, *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split()[-1]), _sidecar(out)["Options"]["threads"]


def test_threads_cap_torch_and_default_to_the_cpus_this_process_may_use(tiny_model_root, tmp_path):
    """README: "-threads N caps torch's threads (default: the CPUs this process may use)"."""
    image = tmp_path / "img.nii.gz"
    nib.save(ras_image(synthetic_t2w((24, 28, 16))), image)
    assert _threads_after_a_run(image, tiny_model_root, tmp_path / "one.nii.gz", 1) == (1, 1)
    cpus = len(os.sched_getaffinity(0))
    assert _threads_after_a_run(image, tiny_model_root, tmp_path / "default.nii.gz", None) == (cpus, cpus)
    first_cpu = str(min(os.sched_getaffinity(0)))
    assert _threads_after_a_run(image, tiny_model_root, tmp_path / "pinned.nii.gz", None, taskset=first_cpu) == (1, 1)


def test_threads_option_is_recorded_from_the_command_line(tiny_model_root, tmp_path, rootlets_home):
    image = tmp_path / "img.nii.gz"
    nib.save(ras_image(synthetic_t2w((24, 28, 16))), image)
    result = run_cli("-i", image, "-model", tiny_model_root, "-device", "cpu", "-region", "whole", "-threads", "1",
                     "-v", "0", env_home=rootlets_home)
    assert result.returncode == 0, result.stderr
    assert _sidecar(tmp_path / "img_rootlets.nii.gz")["Options"]["threads"] == 1


# --- Whole datasets: -config, -include from a file, the summary, the log --------------------------------------------

@pytest.fixture
def small_dataset(tmp_path) -> Path:
    return make_dataset(tmp_path)


def test_batch_config_yaml_gives_the_options_and_the_command_line_wins(small_dataset, tiny_model_root, tmp_path,
                                                                      rootlets_home):
    """README: "The segmentation and post-processing options of sct_deepseg_rootlets apply; -config takes them as
    YAML" (keys: the option names without the dash)."""
    config = tmp_path / "config.yml"
    config.write_text(f"path_data: {small_dataset}\npath_output: {tmp_path / 'out'}\nmodel: {tiny_model_root}\n"
                      f"device: cpu\ninclude: sub-04\nmin_size_mm3: 2\nno_qc: true\n")
    result = run_cli("-config", config, "-v", "0", env_home=rootlets_home, command="sct_rootlets_batch")
    assert result.returncode == 0, result.stderr
    written = sorted(p.name for p in (tmp_path / "out/derivatives/labels").rglob("*_dseg.nii.gz"))
    assert written == ["sub-04_T2w_label-rootlets_dseg.nii.gz"]
    sidecar = _sidecar(tmp_path / "out/derivatives/labels/sub-04/anat/sub-04_T2w_label-rootlets_dseg.nii.gz")
    assert sidecar["Options"]["postprocessing"]["min_volume_mm3"] == 2.0
    assert not (tmp_path / "out/qc").exists()

    again = run_cli("-config", config, "-include", "sub-06", "-path-output", tmp_path / "out2", "-v", "0",
                    env_home=rootlets_home, command="sct_rootlets_batch")
    assert again.returncode == 0, again.stderr
    assert [p.name for p in (tmp_path / "out2/derivatives/labels").rglob("*_dseg.nii.gz")] == [
        "sub-06_T2w_label-rootlets_dseg.nii.gz"], "the command line overrides the config"

    config.write_text("path_data: ds\nno_such_option: 1\n")
    refused = run_cli("-config", config, env_home=rootlets_home, command="sct_rootlets_batch")
    assert refused.returncode == 1 and "no_such_option" in refused.stderr.strip().splitlines()[-1]


def test_batch_include_takes_the_qc_viewers_fail_list_and_writes_the_summary(small_dataset, tiny_model_root, tmp_path,
                                                                           rootlets_home):
    """README: -include takes "a file of names such as the QC viewer's export" (qc_fail_subjects.txt: one subject
    per line); the summary has "one row per image and level: voxels, volume, extents, PMJ distances"."""
    fails = tmp_path / "qc_fail_subjects.txt"
    fails.write_text("sub-02\nsub-05\n")
    out = tmp_path / "out"
    result = run_cli("-path-data", small_dataset, "-path-output", out, "-model", tiny_model_root, "-device", "cpu",
                     "-include", fails, "-no-qc", "-v", "0", env_home=rootlets_home, command="sct_rootlets_batch")
    assert result.returncode == 0, result.stderr
    assert "Done: 3 segmented, 0 up to date, 0 failed." in result.stdout
    dsegs = sorted((out / "derivatives/labels").rglob("*_dseg.nii.gz"))
    assert [p.name for p in dsegs] == ["sub-02_T2w_label-rootlets_dseg.nii.gz",
                                       "sub-05_run-1_T2w_label-rootlets_dseg.nii.gz",
                                       "sub-05_run-2_T2w_label-rootlets_dseg.nii.gz"]

    summary = pd.read_csv(out / "results/rootlets_summary.csv")
    assert list(summary.columns) == ["subject", "session", "image", "spinal_level", "level_name", "voxels",
                                     "volume_mm3", "slice_start", "slice_end", "distance_from_pmj_start",
                                     "distance_from_pmj_end", "height", "cord_mask", "cord_reason",
                                     "quality_score", "level_score", "quality_flags"]
    expected = []
    for dseg in dsegs:  # worked out from the label maps themselves
        labels = _labels(dseg)
        voxel_mm3 = float(np.prod(nib.load(dseg).header.get_zooms()[:3]))
        image = dseg.name.replace("_label-rootlets_dseg.nii.gz", ".nii.gz")
        for level in sorted(set(np.unique(labels)) - {0}):
            count = int((labels == level).sum())
            expected.append((dseg.name[:6], image, int(level), count, round(count * voxel_mm3, 3)))
    got = [(row.subject, row.image, int(row.spinal_level), int(row.voxels), round(row.volume_mm3, 3))
           for row in summary.itertuples()]
    assert sorted(got) == sorted(expected)
    names = dict(zip(summary.spinal_level, summary.level_name))
    assert all(names[level] == ["C2", "C3", "C4", "C5", "C6", "C7", "C8", "T1"][level - 2]
               for level in names if 2 <= level <= 9)

    levels = pd.read_csv(out / "derivatives/labels/sub-02/anat/sub-02_T2w_label-rootlets_dseg_spinal_levels.csv")
    sub02 = summary[summary.subject == "sub-02"].set_index("spinal_level")
    for row in levels.itertuples():  # sub-02 has a manual cord mask: its extents are the levels CSV's
        assert (sub02.loc[row.spinal_level, "slice_start"], sub02.loc[row.spinal_level, "slice_end"]) == (
            row.slice_start, row.slice_end)
    assert set(summary[summary.subject == "sub-02"].cord_mask) == {"given"}  # its manual mask
    assert set(summary[summary.subject == "sub-05"].cord_mask) == {"computed"}  # none given: the cord model's


def test_batch_failure_traceback_goes_to_the_log(small_dataset, tiny_model_root, tmp_path, rootlets_home):
    """README: one bad image's "traceback goes to OUT/log/<stem>.log", the run exits 1 with one line listing the
    failures."""
    out = tmp_path / "out"
    result = run_cli("-path-data", small_dataset, "-path-output", out, "-model", tiny_model_root, "-device", "cpu",
                     "-include", "sub-07 sub-08", "-no-qc", "-v", "0", env_home=rootlets_home,
                     command="sct_rootlets_batch")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("sct_rootlets_batch: error: 1 of 2 image(s) failed: "
                                                             "sub-07 (sub-07_T2w.nii.gz:")
    assert sorted(p.name for p in (out / "log").iterdir()) == ["sub-07_T2w.log"]
    log = (out / "log/sub-07_T2w.log").read_text()
    assert "Traceback (most recent call last):" in log
    assert str(small_dataset / "sub-07/anat/sub-07_T2w.nii.gz") in log
    assert (out / "derivatives/labels/sub-08/anat/sub-08_T2w_label-rootlets_dseg.nii.gz").is_file()
    assert not (out / "derivatives/labels/sub-07").exists()


# --- Quality control: the lock shared with SCT ----------------------------------------------------------------------

def test_qc_writers_wait_for_the_lock_scts_writers_take(tmp_path):
    """README: "Writers take the same named lock as SCT's (sct_qc-<folder>-<md5>)": the md5 of the folder's real
    path. Held here as SCT holds it (a portalocker semaphore of that name), an entry waits for it."""
    import portalocker

    from sct_rootlets.qc.entries import add_entry
    from sct_rootlets.qc.pictures import save_png

    real = tmp_path / "reports" / "qc"
    real.mkdir(parents=True)
    link = tmp_path / "qc_link"
    link.symlink_to(real)
    name = f"sct_qc-qc-{hashlib.md5(os.path.realpath(link).encode()).hexdigest()}"
    assert name.endswith(hashlib.md5(str(real).encode()).hexdigest())

    def pictures(images):
        save_png(np.full((8, 8, 3), 90, np.uint8), images.background)
        save_png(np.zeros((8, 8, 4), np.uint8), images.overlay)

    def write():
        add_entry(link, input_path=tmp_path / "ds/sub-01/anat/sub-01_T2w.nii.gz", command="sct_deepseg_rootlets",
                  cmdline="test", plane="Axial", render=pictures)

    held = portalocker.BoundedSemaphore(maximum=1, name=name, timeout=5)
    held.acquire()
    writer = threading.Thread(target=write)
    try:
        writer.start()
        time.sleep(2)  # ample time to write one tiny entry, were the lock not shared
        assert writer.is_alive() and not list(real.glob("_json/*.json")), "the writer waits for SCT's lock"
    finally:
        held.release()
    writer.join(timeout=60)
    assert not writer.is_alive() and len(list(real.glob("_json/qc_*.json"))) == 1


# --- Spinal levels: -dilate-mm and slice_midpoint -------------------------------------------------------------------

def test_levels_dilate_mm_decides_which_rootlets_meet_the_cord_and_midpoints_are_halfway(tmp_path, rootlets_home):
    """README: "the cord, dilated by -dilate-mm (3 mm), is intersected with the rootlets; each level spans its most
    rostral to its most caudal intersected slice"; slices numbered from the inferior end; slice_midpoint is halfway.
    A straight cord (radius 3 mm, 1 mm voxels, RAS); level 3 lies 2 mm from the cord's surface on slices 25-29,
    level 4 touches it (1 mm) on slices 10-14."""
    shape = (21, 21, 40)
    x, y = np.meshgrid(np.arange(21) - 10, np.arange(21) - 10, indexing="ij")
    cord = np.repeat(((x ** 2 + y ** 2) <= 9)[..., None], shape[2], axis=2).astype(np.uint8)
    rootlets = np.zeros(shape, np.uint8)
    rootlets[10 + 5, 10, 25:30] = 3   # cord surface at x = +3: 2 mm away
    rootlets[10 - 4, 10, 10:15] = 4   # 1 mm away
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    for name, data in (("cord", cord), ("rootlets", rootlets)):
        nib.save(nib.Nifti1Image(data, affine), tmp_path / f"{name}.nii.gz")

    def levels(*extra):
        out = tmp_path / f"out{'_'.join(extra)}"
        result = run_cli("-i", tmp_path / "rootlets.nii.gz", "-s", tmp_path / "cord.nii.gz", "-ofolder", out, *extra,
                         env_home=rootlets_home, command="sct_rootlets_levels")
        assert result.returncode == 0, result.stderr
        return pd.read_csv(out / "rootlets_spinal_levels.csv").set_index("spinal_level")

    default = levels()
    assert list(default.index) == [3, 4]
    assert (default.loc[3, "slice_start"], default.loc[3, "slice_end"]) == (29, 25)
    assert (default.loc[4, "slice_start"], default.loc[4, "slice_end"]) == (14, 10)
    assert list(default.slice_midpoint) == [27.0, 12.0]
    assert default.distance_from_pmj_midpoint.isna().all(), "no -pmj: blank distances"
    assert list(levels("-dilate-mm", "1.5").index) == [4], "2 mm from the cord: outside a 1.5 mm dilation"
    assert list(levels("-dilate-mm", "2.5").index) == [3, 4]


# --- Inference as SCT runs it: -tta ---------------------------------------------------------------------------------

def test_tta_mirrors_as_the_stock_predictor_does(tiny_trainer_dir, tmp_path, rootlets_home):
    """README: "Gaussian sliding window with step 0.5, mirroring only with -tta"."""
    image = tmp_path / "img.nii.gz"
    nib.save(ras_image(synthetic_t2w((32, 36, 20))), image)
    out = tmp_path / "tta.nii.gz"
    result = run_cli("-i", image, "-o", out, "-model", tiny_trainer_dir, "-tta", "-device", "cpu", "-region", "whole",
                     "-order-levels", "0", "-v", "0", env_home=rootlets_home)
    assert result.returncode == 0, result.stderr
    assert _sidecar(out)["Options"]["tta"] is True
    mirrored = stock_prediction(tiny_trainer_dir, nib.load(image), mirroring=True)
    np.testing.assert_array_equal(_labels(out), mirrored)
    assert not np.array_equal(mirrored, stock_prediction(tiny_trainer_dir, nib.load(image))), \
        "mirroring changes this model's labels, so a run without it would fail the comparison"


# --- Never destructive: a crash leaves nothing ----------------------------------------------------------------------

@pytest.mark.parametrize("stage", ["inference", "writing"])
@pytest.mark.parametrize("crash", [RuntimeError, KeyboardInterrupt])
def test_a_crash_during_inference_or_writing_leaves_nothing_behind(stage, crash, tiny_model_root, tmp_path,
                                                                    monkeypatch):
    """README: "Outputs are written to a temp file and renamed, so a failed run leaves nothing behind"."""
    from sct_rootlets.inference.session import InferenceSession
    from sct_rootlets.io import outputs

    image = tmp_path / "in" / "img.nii.gz"
    image.parent.mkdir()
    nib.save(ras_image(synthetic_t2w((24, 28, 16))), image)

    def boom(*args, **kwargs):
        raise crash("crash")

    if stage == "inference":
        monkeypatch.setattr(InferenceSession, "_predict", boom)  # under both predict and predict_scored
    else:  # the label map is on disk (as a temp file) when writing its sidecar fails
        monkeypatch.setattr(outputs.json, "dumps", boom)
    with pytest.raises(crash):
        segment_rootlets([image], output=tmp_path / "out" / "sub" / "img_rootlets.nii.gz", model=str(tiny_model_root),
                         device="cpu", region="whole")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")
                  if "rootlets_home" not in p.parts) == ["in", "in/img.nii.gz"]


# --- Spinal levels in one run of sct_deepseg_rootlets ---------------------------------------------------------------

def test_pmj_and_discs_given_to_sct_deepseg_rootlets_write_the_levels_command_outputs(tiny_model_root, tmp_path,
                                                                                      rootlets_home):
    """README: "sct_deepseg_rootlets writes levels when -s, -pmj or -discs is given" ("in one run"): the same CSVs
    as sct_rootlets_levels on its output, with PMJ distances and the vertebral tables."""
    image = ras_image(synthetic_t2w((40, 48, 24)))
    cord = np.zeros(image.shape, np.uint8)
    cord[14:19, 26:31, :] = 1
    pmj = np.zeros(image.shape, np.uint8)
    pmj[16, 28, 23] = 1
    discs = np.zeros(image.shape, np.uint8)
    discs[16, 28, 20], discs[16, 28, 13], discs[16, 28, 6] = 3, 4, 5
    paths = {name: tmp_path / f"{name}.nii.gz" for name in ("image", "cord", "pmj", "discs")}
    nib.save(image, paths["image"])
    for name, data in (("cord", cord), ("pmj", pmj), ("discs", discs)):
        nib.save(nib.Nifti1Image(data, image.affine), paths[name])
    out = tmp_path / "run" / "image_rootlets.nii.gz"
    result = run_cli("-i", paths["image"], "-o", out, "-model", tiny_model_root, "-device", "cpu", "-s", paths["cord"],
                     "-pmj", paths["pmj"], "-discs", paths["discs"], "-canal-mm", "0", "-v", "0",
                     env_home=rootlets_home)
    assert result.returncode == 0, result.stderr
    written = sorted(p.name for p in out.parent.iterdir())
    assert written == ["image_rootlets.json", "image_rootlets.nii.gz", "image_rootlets_spinal_levels.csv",
                       "image_rootlets_spinal_levels.nii.gz", "image_rootlets_spinal_vs_vertebral.csv",
                       "image_rootlets_vertebral_levels.csv"]
    again = run_cli("-i", out, "-s", paths["cord"], "-pmj", paths["pmj"], "-discs", paths["discs"], "-ofolder",
                    tmp_path / "levels", env_home=rootlets_home, command="sct_rootlets_levels")
    assert again.returncode == 0, again.stderr
    for name in ("spinal_levels.csv", "vertebral_levels.csv", "spinal_vs_vertebral.csv"):
        one_run = pd.read_csv(out.parent / f"image_rootlets_{name}")
        separate = pd.read_csv(tmp_path / "levels" / f"image_rootlets_{name}")
        pd.testing.assert_frame_equal(one_run.drop(columns="fname", errors="ignore"),
                                      separate.drop(columns="fname", errors="ignore"))
    spinal = pd.read_csv(out.parent / "image_rootlets_spinal_levels.csv")
    assert len(spinal) >= 1 and spinal.distance_from_pmj_start.notna().all(), "-pmj: distances filled in"
    vertebral = pd.read_csv(out.parent / "image_rootlets_vertebral_levels.csv")
    assert list(vertebral.vertebral_level) == [3, 4], "discs 3, 4, 5 bound vertebrae 3 and 4 (SCT convention)"
    assert list(zip(vertebral.slice_start, vertebral.slice_end)) == [(20, 13), (13, 6)], "from disc n to disc n+1"


def test_pmj_distances_along_a_straight_cord_are_the_straight_distances(tmp_path, rootlets_home):
    """README: "Distances are arc lengths (mm) along a smoothed centerline": along a straight cord (1 mm slices),
    the distance from a PMJ on the top slice to slice s is 59 - s mm."""
    shape = (21, 21, 60)
    cord = np.zeros(shape, np.uint8)
    cord[8:13, 8:13, :] = 1
    rootlets = np.zeros(shape, np.uint8)
    rootlets[13, 10, 0:2], rootlets[13, 10, 28:30], rootlets[13, 10, 58:60] = 3, 4, 5
    pmj = np.zeros(shape, np.uint8)
    pmj[10, 10, 59] = 1
    for name, data in (("cord", cord), ("rootlets", rootlets), ("pmj", pmj)):
        nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / f"{name}.nii.gz")
    result = run_cli("-i", tmp_path / "rootlets.nii.gz", "-s", tmp_path / "cord.nii.gz", "-pmj", tmp_path / "pmj.nii.gz",
                     "-ofolder", tmp_path / "out", env_home=rootlets_home, command="sct_rootlets_levels")
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(tmp_path / "out/rootlets_spinal_levels.csv").set_index("spinal_level")
    expected = {3: (58.0, 59.0), 4: (30.0, 31.0), 5: (0.0, 1.0)}
    for level, (start, end) in expected.items():
        assert (table.loc[level, "distance_from_pmj_start"], table.loc[level, "distance_from_pmj_end"]) == \
            pytest.approx((start, end), abs=0.05), level
