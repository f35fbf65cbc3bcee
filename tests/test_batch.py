"""Whole datasets: discovery, failure isolation, resume, local pool vs Dask, and the sct_run_batch script."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

import tiny_model
from conftest import BIN, SHARED_DATA, no_cord_t2w, ras_image, run_cli, synthetic_t2w, tree_digest
from sct_rootlets.io import bids

REPO = Path(__file__).resolve().parents[1]
SHAPE = (24, 28, 16)


def _image(seed: int) -> nib.Nifti1Image:
    return ras_image(synthetic_t2w(SHAPE, seed=seed))


def _cord(image: nib.Nifti1Image) -> nib.Nifti1Image:
    cord = np.zeros(SHAPE, np.uint8)
    cord[8:12, 15:19, :] = 1
    return nib.Nifti1Image(cord, image.affine)


def make_dataset(root: Path) -> Path:
    """10 subjects, 12 T2w images (sub-03 has two sessions, sub-05 two runs), 2 of them corrupt; manual cord
    masks for sub-01 and sub-02; a T1w image and a derivatives folder that must be skipped."""
    dataset = root / "ds"
    names = [f"sub-{i:02d}/anat/sub-{i:02d}_T2w" for i in (1, 2, 4, 6, 7, 8, 9, 10)]
    names += ["sub-03/ses-01/anat/sub-03_ses-01_T2w", "sub-03/ses-02/anat/sub-03_ses-02_T2w",
              "sub-05/anat/sub-05_run-1_T2w", "sub-05/anat/sub-05_run-2_T2w"]
    for seed, name in enumerate(sorted(names)):
        path = dataset / f"{name}.nii.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(_image(seed), path)
    nib.save(ras_image(no_cord_t2w(SHAPE)), dataset / "sub-04/anat/sub-04_T2w.nii.gz")           # no cord in it
    (dataset / "sub-07/anat/sub-07_T2w.nii.gz").write_bytes(b"not a nifti")                      # corrupt
    nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.int16), np.eye(4)), dataset / "sub-09/anat/sub-09_T2w.nii.gz")
    nib.save(_image(99), dataset / "sub-01/anat/sub-01_T1w.nii.gz")
    for subject in ("sub-01", "sub-02"):
        labels = dataset / "derivatives/labels" / subject / "anat"
        labels.mkdir(parents=True)
        nib.save(_cord(_image(0)), labels / f"{subject}_T2w_label-SC_seg.nii.gz")
    (dataset / "dataset_description.json").write_text('{"Name": "test", "BIDSVersion": "1.9.0"}')
    return dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("bids"))


def test_discovery_reports_what_it_skips(dataset):
    images, skipped = bids.discover(dataset)
    assert len(images) == 12
    assert {i.key for i in images} >= {"sub-03/ses-01", "sub-03/ses-02", "sub-05"}
    assert sum(i.subject == "sub-05" for i in images) == 2
    assert [(p.name, reason) for p, reason in skipped] == [("sub-01_T1w.nii.gz", "not a T2w image")]
    assert next(i for i in images if i.subject == "sub-01").labels["cord"].name == "sub-01_T2w_label-SC_seg.nii.gz"
    assert [i.key for i in bids.select(images, include="sub-03")] == ["sub-03/ses-01", "sub-03/ses-02"]
    assert len(bids.select(images, include="sub-01, sub-02")) == 2
    assert len(bids.select(images, exclude="^sub-0[1-5]")) == 5


def _outputs(out: Path) -> dict:
    return {p.relative_to(out): p.stat().st_mtime_ns
            for p in sorted((out / "derivatives/labels").rglob("*_label-rootlets_dseg*"))}


def test_failures_are_isolated_and_resume_recomputes_nothing(dataset, tiny_model_root, tmp_path, rootlets_home):
    out = tmp_path / "out"
    first = run_cli("-path-data", dataset, "-path-output", out, "-model", tiny_model_root, "-device", "cpu",
                    "-v", "0", env_home=rootlets_home, command="sct_rootlets_batch")
    assert first.returncode == 1
    error = first.stderr.strip().splitlines()[-1]
    assert error.startswith("sct_rootlets_batch: error: 2 of 12 image(s) failed: ")
    assert "sub-07 (sub-07_T2w.nii.gz:" in error and "sub-09 (sub-09_T2w.nii.gz:" in error
    dsegs = sorted((out / "derivatives/labels").rglob("*_label-rootlets_dseg.nii.gz"))
    assert len(dsegs) == 10
    assert (out / "derivatives/labels/sub-03/ses-02/anat/sub-03_ses-02_T2w_label-rootlets_dseg.nii.gz").is_file()
    assert sorted(p.name for p in (out / "log").iterdir()) == ["sub-07_T2w.log", "sub-09_T2w.log"]
    assert not list((out / "derivatives/labels").glob("sub-0[79]/**/*.nii.gz")), "failures leave no outputs"
    description = json.loads((out / "derivatives/labels/dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    levels = out / "derivatives/labels/sub-01/anat/sub-01_T2w_label-rootlets_dseg_spinal_levels.csv"
    assert levels.is_file()
    summary = pd.read_csv(out / "results/rootlets_summary.csv")
    assert summary.groupby(["subject", "session", "image"], dropna=False).ngroups == 10
    assert summary.loc[summary.subject == "sub-01", "slice_start"].notna().any()
    assert (summary.voxels > 0).all()
    datasets_js = (out / "qc/js/datasets.js").read_text()
    assert datasets_js.count('"command": "sct_rootlets_batch"') == 20

    before = _outputs(out)
    again = run_cli("-path-data", dataset, "-path-output", out, "-model", tiny_model_root, "-device", "cpu",
                    "-resume", "-v", "0", env_home=rootlets_home, command="sct_rootlets_batch")
    assert again.returncode == 1 and "Done: 0 segmented, 10 up to date, 2 failed." in again.stdout
    assert _outputs(out) == before, "nothing recomputed"

    refused = run_cli("-path-data", dataset, "-path-output", out, "-model", tiny_model_root,
                      env_home=rootlets_home, command="sct_rootlets_batch")
    assert refused.returncode == 1 and "use -resume" in refused.stderr

    changed = run_cli("-path-data", dataset, "-path-output", out, "-model", tiny_model_root, "-device", "cpu",
                      "-resume", "-step-size", "0.75", "-include", "sub-01 sub-02", "-v", "0",
                      env_home=rootlets_home, command="sct_rootlets_batch")
    assert changed.returncode == 0 and "Done: 2 segmented, 0 up to date, 0 failed." in changed.stdout


def test_a_different_model_invalidates_resume(dataset, tiny_model_root, tmp_path, rootlets_home):
    out = tmp_path / "out"
    args = ("-path-data", dataset, "-path-output", out, "-device", "cpu", "-include", "sub-02", "-v", "0")
    assert run_cli(*args, "-model", tiny_model_root, env_home=rootlets_home,
                   command="sct_rootlets_batch").returncode == 0
    other = tmp_path / "other_model"
    tiny_model.build_model_folder(other, folds=("0",))
    rerun = run_cli(*args, "-model", other, "-resume", env_home=rootlets_home, command="sct_rootlets_batch")
    assert rerun.returncode == 0 and "Done: 1 segmented, 0 up to date" in rerun.stdout


def test_local_pool_and_dask_cluster_give_identical_outputs(dataset, tiny_model_root, tmp_path, rootlets_home):
    from dask.distributed import LocalCluster

    common = ("-path-data", dataset, "-model", tiny_model_root, "-device", "cpu", "-exclude", "sub-07 sub-09",
              "-engine", "torch", "-no-qc", "-v", "0")  # OpenVINO's last bits may vary with the thread count
    pool = run_cli(*common, "-path-output", tmp_path / "pool", "-jobs", "2", env_home=rootlets_home,
                   command="sct_rootlets_batch")
    assert pool.returncode == 0, pool.stderr
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        on_dask = run_cli(*common, "-path-output", tmp_path / "dask", "-scheduler", cluster.scheduler_address,
                          env_home=rootlets_home, command="sct_rootlets_batch")
    assert on_dask.returncode == 0, on_dask.stderr
    pool_maps = sorted((tmp_path / "pool/derivatives/labels").rglob("*_dseg.nii.gz"))
    assert len(pool_maps) == 10
    for path in pool_maps:
        twin = tmp_path / "dask" / path.relative_to(tmp_path / "pool")
        np.testing.assert_array_equal(np.asanyarray(nib.load(path).dataobj), np.asanyarray(nib.load(twin).dataobj))
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "pool/results/rootlets_summary.csv"),
                                  pd.read_csv(tmp_path / "dask/results/rootlets_summary.csv"))


def sct_run_batch_env(dataset: Path, out: Path, home: Path) -> dict:
    """The environment sct_run_batch gives a job (its PATH_* variables), with our commands on the PATH."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "SCT_ROOTLETS_HOME": str(home),
            "PATH_DATA": str(dataset), "PATH_DATA_PROCESSED": str(out / "data_processed"),
            "PATH_RESULTS": str(out / "results"), "PATH_LOG": str(out / "log"), "PATH_QC": str(out / "qc"),
            "PATH_SEGMANUAL": str(dataset / "derivatives/labels")}


def test_process_script_under_the_sct_run_batch_contract(dataset, tiny_model_root, tmp_path):
    """A stand-in for sct_run_batch: its environment variables and $1, without SCT installed."""
    out = tmp_path / "run"
    env = sct_run_batch_env(dataset, out, tmp_path / "h")
    jobs = [subprocess.Popen(["bash", str(REPO / "batch/process_rootlets.sh"), subject, str(tiny_model_root)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for subject in ("sub-01", "sub-02")]                     # in parallel, as sct_run_batch -jobs 2
    for job in jobs:
        _, stderr = job.communicate(timeout=600)
        assert job.returncode == 0, stderr[-3000:]
    anat = out / "data_processed/sub-01/anat"
    assert (anat / "sub-01_T2w_label-rootlets_dseg.nii.gz").is_file()
    assert (anat / "sub-01_T2w_label-rootlets_dseg.json").is_file()
    assert [p.name for p in (out / "results").iterdir()] == ["spinal_levels.csv"], "only results, no lock file"
    assert not [p for p in out.rglob("*") if "lock" in p.name.lower()]
    table = pd.read_csv(out / "results/spinal_levels.csv")
    assert list(table.columns[:3]) == ["spinal_level", "fname", "slice_start"]
    assert set(table.fname.map(lambda f: Path(f).name[:6])) == {"sub-01", "sub-02"}, "one header, both jobs' rows"
    assert (out / "qc/js/datasets.js").is_file()
    entries = [json.loads(p.read_text()) for p in (out / "qc/_json").glob("qc_*.json")]
    assert {(e["dataset"], e["subject"]) for e in entries} == {("ds", "sub-01"), ("ds", "sub-02")}
    assert (dataset / "sub-01/anat/sub-01_T2w.nii.gz").is_file(), "the raw dataset is untouched"

    # No manual cord mask, and the cord model finds no cord in this generated image (noise, not a spine): the job
    # still succeeds (no SCT needed), with rootlets but neither a cord mask nor levels ("without levels").
    no_mask = subprocess.run(["bash", str(REPO / "batch/process_rootlets.sh"), "sub-04", str(tiny_model_root)],
                             env=env, capture_output=True, text=True, timeout=600)
    assert no_mask.returncode == 0, no_mask.stderr[-3000:]
    assert "No spinal cord was found in" in no_mask.stderr
    anat = out / "data_processed/sub-04/anat"
    rootlets = anat / "sub-04_T2w_label-rootlets_dseg.nii.gz"
    assert rootlets.is_file() and nib.load(rootlets).shape == SHAPE
    assert json.loads((anat / "sub-04_T2w_label-rootlets_dseg.json").read_text())["Options"]["cord_mask"][
        "Found"] is False
    assert not (anat / "sub-04_T2w_seg.nii.gz").exists(), "no cord found: no cord mask"
    assert not list(anat.glob("*spinal_levels*")), "no cord found: no levels"
    assert set(pd.read_csv(out / "results/spinal_levels.csv").fname.map(lambda f: Path(f).name[:6])) == {
        "sub-01", "sub-02"}, "no rows for sub-04"

    missing_env = subprocess.run(["bash", str(REPO / "batch/process_rootlets.sh"), "sub-01"],
                                 env={"PATH": os.environ["PATH"]}, capture_output=True, text=True)
    assert missing_env.returncode == 2 and "PATH_DATA is not set" in missing_env.stderr


@pytest.mark.skipif(not (SHARED_DATA / "real_bids" / "sub-errsm24").is_dir(),
                    reason="../shared/data/real_bids is not available")
def test_process_script_computes_the_cord_and_levels_of_a_real_scan(tiny_model_root, tmp_path):
    """No manual mask, a real scan: sct_rootlets_cord writes <stem>_seg.nii.gz, the rootlets use it and the levels
    are computed and appended to $PATH_RESULTS/spinal_levels.csv."""
    dataset = tmp_path / "realds"
    anat = dataset / "sub-errsm24" / "anat"
    anat.mkdir(parents=True)
    shutil.copy(SHARED_DATA / "real_bids/sub-errsm24/anat/sub-errsm24_T2w.nii.gz", anat)   # not its manual mask
    out = tmp_path / "run"
    env = {**sct_run_batch_env(dataset, out, tmp_path / "h"), "SCT_ROOTLETS_THREADS": "2"}
    job = subprocess.run(["bash", str(REPO / "batch/process_rootlets.sh"), "sub-errsm24", str(tiny_model_root)],
                         env=env, capture_output=True, text=True, timeout=900)
    assert job.returncode == 0, job.stderr[-3000:]
    processed = out / "data_processed/sub-errsm24/anat"
    image = nib.load(anat / "sub-errsm24_T2w.nii.gz")
    cord = nib.load(processed / "sub-errsm24_T2w_seg.nii.gz")
    assert cord.shape == image.shape and np.allclose(cord.affine, image.affine)
    manual = np.asanyarray(nib.load(SHARED_DATA / "real_bids/derivatives/labels/sub-errsm24/anat/"
                                    "sub-errsm24_T2w_label-SC_seg.nii.gz").dataobj) > 0
    computed = np.asanyarray(cord.dataobj) > 0
    assert 2 * (computed & manual).sum() / (computed.sum() + manual.sum()) > 0.7, "the computed mask is the cord"
    sidecar = json.loads((processed / "sub-errsm24_T2w_label-rootlets_dseg.json").read_text())
    assert sidecar["Options"]["cord_mask"] == {"Computed": False, "File": "sub-errsm24_T2w_seg.nii.gz"}
    levels = pd.read_csv(processed / "sub-errsm24_T2w_label-rootlets_dseg_spinal_levels.csv")
    assert list(levels.columns[:7]) == ["spinal_level", "fname", "slice_start", "slice_end",
                                        "distance_from_pmj_start", "distance_from_pmj_end", "height"]
    assert len(levels) >= 1
    table = pd.read_csv(out / "results/spinal_levels.csv")
    assert len(table) == len(levels) and set(table.fname.map(lambda f: Path(f).name[:11])) == {"sub-errsm24"}


# --- other contrasts (-suffix) -------------------------------------------------------------------------------

CONTRASTS = SHARED_DATA / "real_contrasts"
#: The MP2RAGE images of a generated dataset (BIDS names, entities where BIDS puts them) and one T2w image.
MP2RAGE_STEMS = ("sub-01/anat/sub-01_T2w", "sub-01/anat/sub-01_UNIT1", "sub-01/anat/sub-01_inv-1_MP2RAGE",
                 "sub-01/anat/sub-01_inv-2_MP2RAGE", "sub-02/ses-01/anat/sub-02_ses-01_UNIT1",
                 "sub-02/ses-01/anat/sub-02_ses-01_inv-1_part-mag_MP2RAGE")


def make_mp2rage_dataset(root: Path) -> Path:
    """MP2RAGE_STEMS as generated images, each with a manual cord mask (no cord model needed)."""
    dataset = root / "mp2rage"
    for seed, stem in enumerate(MP2RAGE_STEMS):
        path = dataset / f"{stem}.nii.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(_image(seed), path)
        labels = dataset / "derivatives/labels" / f"{stem}_label-SC_seg.nii.gz"
        labels.parent.mkdir(parents=True, exist_ok=True)
        nib.save(_cord(_image(seed)), labels)
    return dataset


def _names(images) -> list:
    return [image.stem for image in images]


def test_a_suffix_selects_whole_bids_suffixes_and_the_entities_it_names(tmp_path):
    dataset = make_mp2rage_dataset(tmp_path)
    unit1, skipped = bids.discover(dataset, "UNIT1")
    assert _names(unit1) == ["sub-01_UNIT1", "sub-02_ses-01_UNIT1"]
    assert [i.key for i in unit1] == ["sub-01", "sub-02/ses-01"]
    assert unit1[0].labels["cord"].name == "sub-01_UNIT1_label-SC_seg.nii.gz"
    assert sorted((p.name, reason) for p, reason in skipped) == sorted(
        (f"{Path(stem).name}.nii.gz", "not a UNIT1 image") for stem in MP2RAGE_STEMS if not stem.endswith("UNIT1"))
    # entities before the suffix may sit anywhere among the others (part-mag comes after inv-1 in BIDS)
    assert _names(bids.discover(dataset, "inv-1_MP2RAGE")[0]) == ["sub-01_inv-1_MP2RAGE",
                                                                   "sub-02_ses-01_inv-1_part-mag_MP2RAGE"]
    assert _names(bids.discover(dataset, "inv-2_MP2RAGE")[0]) == ["sub-01_inv-2_MP2RAGE"]
    assert len(bids.discover(dataset, "MP2RAGE")[0]) == 3
    assert _names(bids.discover(dataset)[0]) == ["sub-01_T2w"], "T2w by default"
    assert bids.discover(dataset, "T1")[0] == [], "a suffix is a whole part of the name, not the end of UNIT1"
    assert bids.discover(dataset, "ses-01_UNIT1")[0][0].key == "sub-02/ses-01"
    assert bids.discover(dataset, "inv-02_MP2RAGE")[0] == bids.discover(dataset, "inv-2_MP2RAGE")[0], "an index"
    (dataset / "sub-01/anat/UNIT1.nii.gz").write_bytes(b"")
    assert "UNIT1.nii.gz" not in [i.path.name for i in bids.discover(dataset, "UNIT1")[0]], "not a BIDS name"
    # the contrasts as model cards name them: MP2RAGE's inversions as RootletSeg's card does
    assert [i.contrast for i in bids.discover(dataset, "MP2RAGE")[0]] == ["T1w-INV1", "T1w-INV2", "T1w-INV1"]
    assert [i.contrast for i in unit1] == ["UNIT1", "UNIT1"]
    for text in ("", "_T2w", "T2w.nii.gz", "inv-1_", "inv_MP2RAGE", "*_T2w", "T2w "):
        with pytest.raises(ValueError, match="is not a BIDS suffix"):
            bids.ImageSuffix.parse(text)


def test_contrasts_the_default_model_does_not_list_give_one_warning(tmp_path, caplog):
    """RootletSeg r20250318 is a T2w and 7T MP2RAGE model (SCT_CONVENTIONS.md): its card lists T2w, UNIT1 and the
    two inversion images, so those pass in silence and a T1w image is warned about, once."""
    from sct_rootlets.store import registry

    card = registry.get_card("rootletseg-r20250318")
    dataset = make_mp2rage_dataset(tmp_path)
    (dataset / "sub-01/anat/sub-01_T1w.nii.gz").write_bytes(b"")  # discovery does not read the images
    everything = [image for suffix in ("T2w", "UNIT1", "MP2RAGE") for image in bids.discover(dataset, suffix)[0]]
    assert bids.warn_unlisted_contrasts(everything, card.name, card.contrasts) is None
    t1w = bids.discover(dataset, "T1w")[0]
    with caplog.at_level("WARNING", logger="sct_rootlets"):
        warning = bids.warn_unlisted_contrasts(everything + t1w + t1w, card.name, card.contrasts)
    assert warning == ("Warning: model rootletseg-r20250318 lists the contrast(s) T2w, UNIT1, T1w-INV1, T1w-INV2, "
                       "not T1w: its results on these images are unchecked.")
    assert [record.getMessage() for record in caplog.records] == [warning]
    assert bids.warn_unlisted_contrasts(t1w, "a model that lists nothing", ()) is None


def _warnings(stderr: str) -> list:
    return [line for line in stderr.splitlines() if line.startswith("Warning")]


@pytest.mark.skipif(not (CONTRASTS / "sub-unf01").is_dir(), reason="../shared/data/real_contrasts is not available")
@pytest.mark.parametrize("suffix, stems", [
    ("T1w", ["sub-unf01/anat/sub-unf01_T1w"]),
    ("MTS", ["sub-errsm23/anat/sub-errsm23_acq-MToff_MTS", "sub-errsm23/anat/sub-errsm23_acq-MTon_MTS",
             "sub-errsm24/anat/sub-errsm24_acq-MToff_MTS", "sub-errsm24/anat/sub-errsm24_acq-MTon_MTS"]),
])
def test_batch_finds_and_runs_real_scans_of_other_contrasts(suffix, stems, tiny_model_root, tmp_path, rootlets_home):
    """Real T1w and MT scans (read only): derivatives keep the source's entities, the manual cord masks give the
    levels, QC entries sit in the image's folder as SCT names it (`anat`), and the tiny model (a T2w model:
    tiny_model.dataset_json) warns once."""
    before = tree_digest(CONTRASTS)
    out = tmp_path / "out"
    result = run_cli("-path-data", CONTRASTS, "-path-output", out, "-suffix", suffix, "-model", tiny_model_root,
                     "-device", "cpu", "-engine", "torch", "-folds", "0", "-roi-margin-mm", "4", "-v", "0",
                     env_home=rootlets_home, command="sct_rootlets_batch")
    assert result.returncode == 0, result.stderr
    assert f"Found {len(stems)} {suffix} image(s); processing {len(stems)} in " in result.stdout
    assert _warnings(result.stderr) == [f"Warning: model {tiny_model.RELEASE_DIR} lists the contrast(s) T2w, not "
                                        f"{suffix}: its results on these images are unchecked."]
    labels = out / "derivatives/labels"
    assert sorted(p.relative_to(labels).as_posix() for p in labels.rglob("*_dseg.nii.gz")) == [
        f"{stem}_label-rootlets_dseg.nii.gz" for stem in stems]
    for stem in stems:
        image, dseg = nib.load(CONTRASTS / f"{stem}.nii.gz"), nib.load(labels / f"{stem}_label-rootlets_dseg.nii.gz")
        assert dseg.shape == image.shape and np.allclose(dseg.affine, image.affine)
        options = json.loads((labels / f"{stem}_label-rootlets_dseg.json").read_text())["Options"]
        assert options["cord_mask"]["File"] == str(CONTRASTS / "derivatives/labels" / f"{stem}_label-SC_seg.nii.gz")
        assert (labels / f"{stem}_label-rootlets_dseg_spinal_levels.csv").is_file()
    entries = [json.loads(p.read_text()) for p in (out / "qc/_json").glob("qc_*.json")]
    assert sorted((e["subject"], e["contrast"], e["inputFile"]) for e in entries) == sorted(
        (stem.split("/")[0], "anat", f"{Path(stem).name}.nii.gz") for stem in stems for _plane in range(2))
    assert all(e["backgroundImage"].startswith(f"real_contrasts/{e['subject']}/anat/sct_rootlets_batch/")
               for e in entries)
    assert set(pd.read_csv(out / "results/rootlets_summary.csv").image) == {f"{Path(s).name}.nii.gz" for s in stems}
    assert tree_digest(CONTRASTS) == before, "the shared data is only read"


def test_batch_on_unit1_images_and_a_model_that_lists_them(tiny_model_root, tmp_path, rootlets_home):
    """A generated MP2RAGE dataset: -suffix UNIT1 takes the UNIT1 images only, and a model whose dataset.json
    names UNIT1 among its channel's contrasts is not warned about; inv-2_MP2RAGE images are (as T1w-INV2)."""
    mp2rage = make_mp2rage_dataset(tmp_path)
    dataset_json = tiny_model_root / tiny_model.RELEASE_DIR / tiny_model.TRAINER_DIR / "dataset.json"
    dataset_json.write_text(json.dumps({**json.loads(dataset_json.read_text()), "channel_names": {"0": "T2w+UNIT1"}}))
    common = ("-path-data", mp2rage, "-model", tiny_model_root, "-device", "cpu", "-engine", "torch", "-no-qc",
              "-v", "0")
    unit1 = run_cli(*common, "-path-output", tmp_path / "unit1", "-suffix", "UNIT1", env_home=rootlets_home,
                    command="sct_rootlets_batch")
    assert unit1.returncode == 0, unit1.stderr
    assert _warnings(unit1.stderr) == []
    labels = tmp_path / "unit1/derivatives/labels"
    assert sorted(p.relative_to(labels).as_posix() for p in labels.rglob("*_dseg.nii.gz")) == [
        "sub-01/anat/sub-01_UNIT1_label-rootlets_dseg.nii.gz",
        "sub-02/ses-01/anat/sub-02_ses-01_UNIT1_label-rootlets_dseg.nii.gz"]
    inversion = run_cli(*common, "-path-output", tmp_path / "inv2", "-suffix", "inv-2_MP2RAGE",
                        env_home=rootlets_home, command="sct_rootlets_batch")
    assert inversion.returncode == 0, inversion.stderr
    assert _warnings(inversion.stderr) == [f"Warning: model {tiny_model.RELEASE_DIR} lists the contrast(s) T2w, "
                                           f"UNIT1, not T1w-INV2: its results on these images are unchecked."]
    assert (tmp_path / "inv2/derivatives/labels/sub-01/anat/sub-01_inv-2_MP2RAGE_label-rootlets_dseg.nii.gz").is_file()
    listed = run_cli("-path-data", mp2rage, "-suffix", "MP2RAGE", "-include", "sub-02/ses-01", "-list-images",
                     env_home=rootlets_home, command="sct_rootlets_batch")
    assert listed.returncode == 0
    assert listed.stdout == "sub-02/ses-01/anat/sub-02_ses-01_inv-1_part-mag_MP2RAGE.nii.gz\n", "the list only"
    none = run_cli(*common, "-path-output", tmp_path / "none", "-suffix", "T1w", env_home=rootlets_home,
                   command="sct_rootlets_batch")
    assert none.returncode == 1 and none.stderr.strip().splitlines()[-1] == (
        "sct_rootlets_batch: error: No T1w image to process (check -suffix, -include/-exclude and the dataset "
        "layout).")
    bad = run_cli(*common, "-path-output", tmp_path / "bad", "-suffix", "_UNIT1", env_home=rootlets_home,
                  command="sct_rootlets_batch")
    assert bad.returncode == 2 and "argument -suffix: '_UNIT1' is not a BIDS suffix" in bad.stderr
    config = tmp_path / "config.yml"
    config.write_text("suffix: 1.5\n")  # a YAML number, checked as the command line's text is
    from_yaml = run_cli(*common, "-path-output", tmp_path / "bad", "-config", config, env_home=rootlets_home,
                        command="sct_rootlets_batch")
    assert from_yaml.returncode == 2 and "argument -suffix: '1.5' is not a BIDS suffix" in from_yaml.stderr
    assert not (tmp_path / "none").exists() and not (tmp_path / "bad").exists(), "nothing written"


def test_process_script_takes_the_suffix_after_the_model(tiny_model_root, tmp_path):
    """sct_run_batch -script-args "MODEL SUFFIX": the job processes its subject's images of that suffix, found as
    sct_rootlets_batch finds them (entities between inv-1 and the suffix included); none is no failure."""
    mp2rage = make_mp2rage_dataset(tmp_path)
    out = tmp_path / "run"
    env = sct_run_batch_env(mp2rage, out, tmp_path / "h")

    def job(subject: str, suffix: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(REPO / "batch/process_rootlets.sh"), subject, str(tiny_model_root),
                               suffix], env=env, capture_output=True, text=True, timeout=600)

    for subject, suffix in (("sub-01", "UNIT1"), ("sub-02/ses-01", "inv-1_MP2RAGE"), ("sub-01", "T1w")):
        done = job(subject, suffix)
        assert done.returncode == 0, done.stderr[-3000:]
    processed = out / "data_processed"
    assert sorted(p.relative_to(processed).as_posix() for p in processed.rglob("*_label-rootlets_dseg.nii.gz")) == [
        "sub-01/anat/sub-01_UNIT1_label-rootlets_dseg.nii.gz",
        "sub-02/ses-01/anat/sub-02_ses-01_inv-1_part-mag_MP2RAGE_label-rootlets_dseg.nii.gz"]
    table = pd.read_csv(out / "results/spinal_levels.csv")
    assert set(table.fname.map(lambda f: Path(f).name.split("_label-")[0])) == {
        "sub-01_UNIT1", "sub-02_ses-01_inv-1_part-mag_MP2RAGE"}
    bad = job("sub-01", "UNIT1.nii.gz")
    assert bad.returncode == 2 and "argument -suffix: 'UNIT1.nii.gz' is not a BIDS suffix" in bad.stderr
