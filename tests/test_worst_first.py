"""Issue 29, "Review the worst first": `sct_rootlets_dataset select` (the N lowest quality scores not corrected yet,
`-diverse`, its refusals), the batch's quality columns and `rootlets_quality.csv`, and the loop
select -> review -> manifest -> build.

Until sct_rootlets_batch writes quality records itself, the tests write them into real batch sidecars (or into
sidecars shaped like them) by hand, in the record's documented JSON form (keys Score, Confidence, Levels, Flags).
"""

import copy
import gzip
import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import yaml

from conftest import ras_image, run_cli, synthetic_t2w
from review_data import Client, make_review_data
from sct_rootlets.cli import rootlets_dataset
from sct_rootlets.review.lists import read_qc_fail_yml
from sct_rootlets.review.saving import nifti_bytes
from sct_rootlets.review.server import ReviewServer, open_session

SHAPE = (12, 14, 10)
#: The sidecar sct_rootlets_batch writes beside a prediction (its structure, from a run of the tiny model), without
#: a quality record.
BATCH_SIDECAR = {
    "GeneratedBy": [{"Name": "sct_rootlets_batch -path-data ds -path-output preds -model tiny", "Version": "0.1.0"}],
    "Model": {"Name": "model-spinal-rootlets-tiny-r20990101", "Version": "unknown", "ArchiveSHA256": None,
              "FilesSHA256": "0" * 64, "Folder": "/models/tiny/nnUNetTrainer__nnUNetPlans__3d_fullres"},
    "Options": {"device": "cpu", "threads": 2, "tta": False, "step_size": 0.5, "folds": ["0", "1"],
                "checkpoints": ["checkpoint_final.pth"], "orientation": "LPI", "engine": "torch", "region": "fast",
                "roi_margin_mm": 20.0, "input": "ds/sub-01/anat/sub-01_T2w.nii.gz",
                "cord_mask": {"Computed": True, "Found": True, "Model": "sct-rootlets-cord", "Version": "v2",
                              "Plausible": True},
                "postprocessing": {"canal_mm": 12.0, "order_levels": True}, "levels_method": "extent"},
}


def quality_block(score: float, levels: dict = None, flags: tuple = ()) -> dict:
    """A "Quality" value as record.py documents it: `levels` maps a level name to its score, `flags` are
    (name, level, message)."""
    levels = {name: {"Score": value, "Confidence": 0.8, "Voxels": 20} for name, value in (levels or {}).items()}
    return {"Score": score, "Confidence": 0.9, "Levels": levels,
            "Flags": [{"Name": name, "Level": level, "Message": message} for name, level, message in flags]}


def add_quality(sidecar: Path, quality: dict) -> None:
    content = json.loads(sidecar.read_text())
    content["Quality"] = quality
    sidecar.write_text(json.dumps(content, indent=2) + "\n")


def _labels(value: int = 3) -> np.ndarray:
    labels = np.zeros(SHAPE, np.uint8)
    labels[4:7, 5, 3:6] = value
    return labels


#: The dataset of the select tests: image (path below the subject folder) -> its prediction's score; None: a
#: prediction without a quality record; "no prediction": none at all. sub-04 is corrected; sub-09's manual label
#: is empty (what manual_correction.py leaves when it finds nothing to correct: no correction).
SCORES = {"sub-01/ses-01/anat/sub-01_ses-01_T2w": 0.10, "sub-01/ses-02/anat/sub-01_ses-02_T2w": 0.15,
          "sub-02/anat/sub-02_T2w": 0.30, "sub-03/anat/sub-03_T2w": 0.40, "sub-04/anat/sub-04_T2w": 0.20,
          "sub-05/anat/sub-05_T2w": 0.60, "sub-06/anat/sub-06_T2w": 0.30, "sub-07/anat/sub-07_T2w": "no prediction",
          "sub-08/anat/sub-08_T2w": None, "sub-09/anat/sub-09_T2w": 0.05}
FLAGS = {"sub-09/anat/sub-09_T2w": (("missing_level", "C5", "C5 has no rootlet."),
                                    ("order", None, "Levels are out of order."))}


def make_scored_dataset(root: Path) -> tuple:
    """(DS, PRED as sct_rootlets_batch writes it) for SCORES, with batch-shaped sidecars."""
    data, pred = root / "ds", root / "preds"
    for index, (name, score) in enumerate(SCORES.items()):
        image = ras_image(synthetic_t2w(SHAPE, seed=index))
        (data / name).parent.mkdir(parents=True)
        nib.save(image, data / f"{name}.nii.gz")
        if score == "no prediction":
            continue
        prediction = pred / "derivatives/labels" / f"{name}_label-rootlets_dseg.nii.gz"
        prediction.parent.mkdir(parents=True)
        nib.save(nib.Nifti1Image(_labels(), image.affine), prediction)
        sidecar = copy.deepcopy(BATCH_SIDECAR)
        if score is not None:
            sidecar["Quality"] = quality_block(score, {"C3": score}, FLAGS.get(name, ()))
        prediction.with_name(prediction.name.replace(".nii.gz", ".json")).write_text(json.dumps(sidecar))
    for name, labels in (("sub-04/anat/sub-04_T2w", _labels(4)), ("sub-09/anat/sub-09_T2w", np.zeros(SHAPE))):
        correction = data / "derivatives/labels" / f"{name}_label-rootlets_dseg.nii.gz"
        correction.parent.mkdir(parents=True)
        nib.save(nib.Nifti1Image(labels.astype(np.uint8), np.eye(4)), correction)
    (data / "dataset_description.json").write_text('{"Name": "select test", "BIDSVersion": "1.9.0"}')
    return data, pred


def select(capsys, *args) -> tuple:
    """(exit code, stdout, stderr) of `sct_rootlets_dataset select ARGS`, run in this process."""
    code = rootlets_dataset.main(["select", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def listed(path: Path) -> list:
    """The images of a written list, as SCT's manual_correction.py -config reads it (yaml.safe_load, FILES_*
    lists), checked to be what sct_rootlets_review -qc-fail reads too."""
    content = yaml.safe_load(path.read_text())
    assert list(content) == ["FILES_ROOTLETS"]
    assert read_qc_fail_yml(path) == content["FILES_ROOTLETS"]
    return content["FILES_ROOTLETS"]


def test_select_lists_the_lowest_scores_of_images_not_corrected(tmp_path, capsys):
    """Eligible: everything but sub-04 (corrected), sub-07 (no prediction), sub-08 (no record). By score:
    sub-09 0.05, sub-01 ses-01 0.10, sub-01 ses-02 0.15, then sub-02 and sub-06 tie at 0.30 (sub-02 first by
    name), sub-03 0.40, sub-05 0.60."""
    data, pred = make_scored_dataset(tmp_path)
    output = tmp_path / "lists" / "next.yml"
    code, out, err = select(capsys, "-path-data", data, "-pred", pred, "-n", 4, "-o", output)
    assert code == 0, err
    assert listed(output) == ["sub-09/anat/sub-09_T2w.nii.gz", "sub-01/ses-01/anat/sub-01_ses-01_T2w.nii.gz",
                              "sub-01/ses-02/anat/sub-01_ses-02_T2w.nii.gz", "sub-02/anat/sub-02_T2w.nii.gz"]
    assert all((data / name).is_file() for name in listed(output))
    assert output.read_text().startswith("# written by sct_rootlets_dataset select")
    assert os.listdir(output.parent) == ["next.yml"], "written atomically: no temporary file left"
    # the table of what was chosen: image, score, worst level, flags
    rows = [line.split() for line in out.splitlines() if line.strip().startswith("sub-")]
    assert rows == [["sub-09/anat/sub-09_T2w.nii.gz", "0.050", "C3", "missing_level;order"],
                    ["sub-01/ses-01/anat/sub-01_ses-01_T2w.nii.gz", "0.100", "C3", "-"],
                    ["sub-01/ses-02/anat/sub-01_ses-02_T2w.nii.gz", "0.150", "C3", "-"],
                    ["sub-02/anat/sub-02_T2w.nii.gz", "0.300", "C3", "-"]]
    assert "Chose 4 of 7 scored image(s)" in out and "1 image(s) already corrected" in out
    warnings = [line for line in err.splitlines() if line.startswith("Warning")]
    assert len(warnings) == 2
    assert "1 image(s) have no prediction" in warnings[0] and "sub-07/anat/sub-07_T2w.nii.gz" in warnings[0]
    assert "1 prediction(s) have no quality record" in warnings[1] and "sub-08/anat/sub-08_T2w.nii.gz" in warnings[1]

    # PRED given as the derivatives folder, as sct_rootlets_review -path-pred takes it: the same choice
    again = tmp_path / "again.yml"
    assert select(capsys, "-path-data", data, "-path-pred", pred / "derivatives", "-n", 4, "-o", again)[0] == 0
    assert listed(again) == listed(output)

    # more than there is: all seven, worst first, and it says so
    everything = tmp_path / "all.yml"
    code, out, _ = select(capsys, "-path-data", data, "-pred", pred, "-n", 20, "-o", everything)
    assert code == 0 and "Only 7 image(s) could be chosen (-n 20)" in out
    assert [Path(name).name for name in listed(everything)] == [
        "sub-09_T2w.nii.gz", "sub-01_ses-01_T2w.nii.gz", "sub-01_ses-02_T2w.nii.gz", "sub-02_T2w.nii.gz",
        "sub-06_T2w.nii.gz", "sub-03_T2w.nii.gz", "sub-05_T2w.nii.gz"]


def test_diverse_spreads_over_subjects_and_sites(tmp_path, capsys):
    data, pred = make_scored_dataset(tmp_path)
    # Subjects only (no participants.tsv): each subject's worst first, by score (sub-09, sub-01 ses-01, sub-02,
    # sub-06), before sub-01's second session.
    code, out, err = select(capsys, "-path-data", data, "-pred", pred, "-n", 4, "-o", tmp_path / "subjects.yml",
                            "-diverse")
    assert code == 0, err
    assert listed(tmp_path / "subjects.yml") == ["sub-09/anat/sub-09_T2w.nii.gz",
                                                 "sub-01/ses-01/anat/sub-01_ses-01_T2w.nii.gz",
                                                 "sub-02/anat/sub-02_T2w.nii.gz", "sub-06/anat/sub-06_T2w.nii.gz"]
    assert "in rounds over subjects" in out

    # Sites from participants.tsv: A = sub-01, sub-02, sub-06; B = sub-03, sub-09; sub-05 has none (one group of
    # its own). First round, each site's worst (its subjects' worst first): sub-09 (B, 0.05), sub-01 ses-01
    # (A, 0.10), sub-05 (no site, 0.60); second round: sub-02 (A, 0.30), sub-03 (B, 0.40).
    (data / "participants.tsv").write_text("participant_id\tage\tsite\n" + "".join(
        f"sub-0{number}\t30\t{site}\n" for number, site in ((1, "A"), (2, "A"), (3, "B"), (4, "B"), (5, "n/a"),
                                                             (6, "A"), (7, "A"), (8, "B"), (9, "B"))))
    code, out, err = select(capsys, "-path-data", data, "-pred", pred, "-n", 5, "-o", tmp_path / "sites.yml",
                            "-diverse")
    assert code == 0, err
    assert listed(tmp_path / "sites.yml") == ["sub-09/anat/sub-09_T2w.nii.gz",
                                              "sub-01/ses-01/anat/sub-01_ses-01_T2w.nii.gz",
                                              "sub-05/anat/sub-05_T2w.nii.gz", "sub-02/anat/sub-02_T2w.nii.gz",
                                              "sub-03/anat/sub-03_T2w.nii.gz"]
    assert "in rounds over sites (participants.tsv column site)" in out


def test_select_refuses_bad_input_in_one_sentence(tmp_path, capsys):
    data, pred = make_scored_dataset(tmp_path)
    existing = tmp_path / "next.yml"
    existing.write_text("precious\n")
    image = data / "sub-02/anat/sub-02_T2w.nii.gz"
    image_bytes = image.read_bytes()
    before = {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*")}
    cases = ((("-path-data", tmp_path / "nowhere", "-pred", pred, "-n", 2, "-o", tmp_path / "a.yml"),
              f"The dataset folder {tmp_path / 'nowhere'} does not exist."),
             (("-path-data", data, "-pred", tmp_path / "nowhere", "-n", 2, "-o", tmp_path / "a.yml"),
              f"The predictions folder {tmp_path / 'nowhere'} does not exist."),
             (("-path-data", data, "-pred", pred, "-n", 0, "-o", tmp_path / "a.yml"), "-n must be at least 1."),
             (("-path-data", data, "-pred", pred, "-n", 2, "-o", existing), "already exists; use -overwrite"),
             (("-path-data", data, "-pred", pred, "-n", 2, "-o", image, "-overwrite"), "must end with .yml"),
             (("-path-data", data, "-pred", pred, "-n", 2, "-o", data, "-overwrite"), "would overwrite an input"),
             (("-path-data", data, "-pred", tmp_path / "lists", "-n", 2, "-o", tmp_path / "a.yml"), None))
    (tmp_path / "lists").mkdir()  # a predictions folder without predictions: nothing to rank
    for args, words in cases:
        code, out, err = select(capsys, *args)
        assert code == 1 and out == "", args
        assert err.count("\n") == 1 and err.startswith("sct_rootlets_dataset: error: "), err
        if words is None:
            assert "No image to choose" in err and "9 have no prediction" in err, err
        else:
            assert words in err, err
    assert existing.read_text() == "precious\n" and image.read_bytes() == image_bytes
    assert {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*") if path != tmp_path / "lists"} == before


# --- the batch's tables ------------------------------------------------------------------------------------------

def test_batch_tables_carry_the_quality_records_worst_first(tmp_path, tiny_model_root, rootlets_home):
    """rootlets_summary.csv: each level row carries its image's score, that level's score and the image's flag
    names; rootlets_quality.csv: one row per image, worst first, an image without rootlets included, an image
    without a record last with empty cells."""
    data = make_review_data(tmp_path)
    out = tmp_path / "batch"
    args = ("-path-data", data["data"], "-path-output", out, "-model", tiny_model_root, "-device", "cpu",
            "-engine", "torch", "-no-qc", "-v", "0")
    first = run_cli(*args, env_home=rootlets_home, command="sct_rootlets_batch")
    assert first.returncode == 0, first.stderr
    labels = out / "derivatives/labels"
    sidecars = {"sub-01": labels / "sub-01/anat/sub-01_T2w_label-rootlets_dseg.json",
                "sub-02": labels / "sub-02/anat/sub-02_T2w_label-rootlets_dseg.json",
                "sub-03": labels / "sub-03/ses-01/anat/sub-03_ses-01_T2w_label-rootlets_dseg.json"}
    content = json.loads(sidecars["sub-03"].read_text())  # sub-03 as predicted before scores existed
    del content["Quality"]
    sidecars["sub-03"].write_text(json.dumps(content))
    add_quality(sidecars["sub-01"], quality_block(0.7, {"C2": 0.65, "C4": 0.9},
                                                  (("missing_level", "C5", "C5 has no rootlet."),
                                                   ("small_level", "C6", "C6 is smaller than expected."))))
    add_quality(sidecars["sub-02"], quality_block(0.2, {"C2": 0.2}))
    # sub-02's rootlets erased: it keeps its record but has no row in the per-level summary
    dseg = nib.load(labels / "sub-02/anat/sub-02_T2w_label-rootlets_dseg.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros(dseg.shape, np.uint8), dseg.affine, dseg.header),
             labels / "sub-02/anat/sub-02_T2w_label-rootlets_dseg.nii.gz")
    again = run_cli(*args, "-resume", env_home=rootlets_home, command="sct_rootlets_batch")
    assert again.returncode == 0 and "0 segmented, 3 up to date" in again.stdout, again.stderr
    assert "rootlets_quality.csv" in again.stdout

    quality = pd.read_csv(out / "results/rootlets_quality.csv", dtype=str, keep_default_na=False)
    assert list(quality.columns) == ["subject", "session", "image", "quality_score", "confidence", "worst_level",
                                     "flags", "flag_messages"]
    assert quality.values.tolist() == [
        ["sub-02", "", "sub-02_T2w.nii.gz", "0.200", "0.900", "C2", "", ""],
        ["sub-01", "", "sub-01_T2w.nii.gz", "0.700", "0.900", "C2", "missing_level;small_level",
         "C5 has no rootlet. | C6 is smaller than expected."],
        ["sub-03", "ses-01", "sub-03_ses-01_T2w.nii.gz", "", "", "", "", ""]]

    summary = pd.read_csv(out / "results/rootlets_summary.csv", dtype=str, keep_default_na=False)
    assert list(summary.columns)[-3:] == ["quality_score", "level_score", "quality_flags"]
    assert set(summary.subject) == {"sub-01", "sub-03"}, "no rootlet, no level row"
    level_names = {"2": "C2", "3": "C3", "4": "C4", "5": "C5", "6": "C6", "7": "C7", "8": "C8", "9": "T1"}
    sub01 = summary[summary.subject == "sub-01"]
    assert len(sub01) > 0 and set(sub01.quality_score) == {"0.700"}
    assert set(sub01.quality_flags) == {"missing_level;small_level"}
    for row in sub01.itertuples():
        assert row.level_score == {"C2": "0.650", "C4": "0.900"}.get(level_names.get(row.spinal_level), ""), row
    sub03 = summary[summary.subject == "sub-03"]
    assert set(sub03.quality_score) == set(sub03.level_score) == set(sub03.quality_flags) == {""}


# --- the loop: select -> review -> manifest -> build -------------------------------------------------------------

def test_select_then_review_manifest_and_build(tmp_path, tiny_model_root, rootlets_home, capsys):
    """Predict a small dataset with sct_rootlets_batch, choose the 2 worst with `select`, open the review on that
    list, save a correction of each through the server, then `manifest` takes exactly those and `build` writes
    them as nnU-Net cases."""
    data = make_review_data(tmp_path)
    dataset, preds = data["data"], tmp_path / "batch"
    predicted = run_cli("-path-data", dataset, "-path-output", preds, "-model", tiny_model_root, "-device", "cpu",
                        "-engine", "torch", "-no-qc", "-v", "0", env_home=rootlets_home, command="sct_rootlets_batch")
    assert predicted.returncode == 0, predicted.stderr
    sidecars = sorted((preds / "derivatives/labels").rglob("*_label-rootlets_dseg.json"))
    assert len(sidecars) == 3
    scores = {}
    for sidecar in sidecars:
        folder = sidecar.parent.relative_to(preds / "derivatives/labels").as_posix()
        image = sidecar.name.replace("_label-rootlets_dseg.json", ".nii.gz")
        scores[f"{folder}/{image}"] = json.loads(sidecar.read_text())["Quality"]["Score"]
    worst_two = sorted(scores, key=lambda name: (scores[name], name))[:2]

    next_list = tmp_path / "next.yml"
    code = rootlets_dataset.main(["select", "-path-data", str(dataset), "-pred", str(preds), "-n", "2",
                                  "-o", str(next_list)])
    assert code == 0, capsys.readouterr().err
    assert listed(next_list) == worst_two

    session, left_out = open_session(path_data=dataset, path_pred=preds / "derivatives", qc_fail=next_list)
    assert sorted(item.name for item in session.items) == sorted(worst_two) and left_out == []
    corrections = {}
    with ReviewServer(session, 0) as server:
        client = Client(server.port, session.token)
        for index, item in enumerate(session.items):  # the rater paints two strands (levels 3 and 5) instead
            content, version = client.labels(index)
            prediction = nib.Nifti1Image.from_bytes(gzip.decompress(content))
            voxels = np.zeros(prediction.shape, np.uint8)
            voxels[3:9, 4, 5] = 3
            voxels[3:9, 10, 12] = 5
            status, _, body = client.save(index, nifti_bytes(nib.Nifti1Image(voxels, prediction.affine)), version,
                                          rater="Grace Hopper")
            assert status == 200, body
            corrections[item.image.stem] = item.correction

    manifest = tmp_path / "D3.tsv"
    result = run_cli("manifest", "-path-data", dataset, "-o", manifest, "-test-fraction", "0", env_home=rootlets_home,
                     command="sct_rootlets_dataset")
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(manifest, sep="\t", dtype=str, keep_default_na=False)
    assert sorted(table.image) == sorted(worst_two) and set(table.rater) == {"Grace Hopper"}
    build = run_cli("build", "-path-data", dataset, "-manifest", manifest, "-o", tmp_path / "nnUNet_raw", "-id", "43",
                    "-name", "D3", "-folds", "2", env_home=rootlets_home, command="sct_rootlets_dataset")
    assert build.returncode == 0, build.stderr
    built = tmp_path / "nnUNet_raw/Dataset043_D3"
    assert sorted(path.name for path in (built / "labelsTr").iterdir()) == sorted(
        f"{stem}.nii.gz" for stem in corrections)
    assert sorted(path.name for path in (built / "imagesTr").iterdir()) == sorted(
        f"{stem}_0000.nii.gz" for stem in corrections)
    assert json.loads((built / "dataset.json").read_text())["numTraining"] == 2
    for stem, correction in corrections.items():  # the saved correction, as nibabel puts it in RAS
        case = nib.load(built / "labelsTr" / f"{stem}.nii.gz")
        expected = nib.as_closest_canonical(nib.load(correction))
        np.testing.assert_array_equal(np.asarray(case.dataobj), np.asarray(expected.dataobj))
        np.testing.assert_allclose(case.affine, expected.affine)
        assert sorted(np.unique(np.asarray(case.dataobj)).tolist()) == [0, 3, 5]
