"""Living beside NeuroPoly's manual_correction.py (issue 28, item 3): our qc_fail.yml goes to it, its rewritten YAML
and its corrections come back, and neither side undoes the other's work.

manual_correction.py is not installed here; `lab_corrects` below does to the files exactly what it does, as read in
its source (spinalcordtoolbox/manual-correction, manual_correction.py and utils.py): the YAML is read with
safe_load and each FILES_X list reduced to file names; for each image the label
`<-path-label>/<sub>/[<ses>/]anat/<stem><suffix>.nii.gz` is copied to the same place under `-path-out`, or, when
there is no such label, an empty int16 mask on the image's grid is created there instead; after the viewer, the
label's JSON sidecar gets `{"Name": "Manual", "Author": <rater>, "Date": "%Y-%m-%d %H:%M:%S"}` appended to
`GeneratedBy`; and the YAML is dumped again with the image's file name moved from `FILES_X` to `CORR_X` (comments
lost)."""

import json
import os
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import yaml

from conftest import run_cli
from review_data import Client, make_review_data
from sct_rootlets.review.server import ReviewServer, open_session

SUFFIX = "_label-rootlets_dseg"


def lab_corrects(config: Path, *, path_img: Path, path_label: Path, path_out: Path, rater: str, edit) -> list:
    """Run manual_correction.py's file steps on the first image of FILES_ROOTLETS in `config`; `edit(voxels)` is
    what the rater paints. Returns the path of the label it wrote."""
    content = yaml.safe_load(config.read_text())
    content = {key: [os.path.basename(str(entry)) for entry in entries or []] for key, entries in content.items()}
    name = content["FILES_ROOTLETS"][0]
    subject = name.split("_")[0]
    session = next((part for part in name.split("_") if part.startswith("ses-")), "")
    relative = Path(subject, session, "anat")
    image = path_img / relative / name
    label = path_label / relative / name.replace(".nii.gz", f"{SUFFIX}.nii.gz")
    out = path_out / relative / name.replace(".nii.gz", f"{SUFFIX}.nii.gz")
    out.parent.mkdir(parents=True, exist_ok=True)
    if label.is_file():
        source = nib.load(label)
        voxels = np.asarray(source.dataobj).copy()
    else:  # its create_empty_mask: zeros of the image's shape, int16
        source = nib.load(image)
        voxels = np.zeros(source.shape, np.int16)
    edit(voxels)
    nib.save(nib.Nifti1Image(voxels, source.affine, source.header), out)
    sidecar = out.with_name(out.name.replace(".nii.gz", ".json"))
    record = json.loads(sidecar.read_text()) if sidecar.is_file() else {"GeneratedBy": []}
    record["GeneratedBy"].append({"Name": "Manual", "Author": rater, "Date": time.strftime("%Y-%m-%d %H:%M:%S")})
    sidecar.write_text(json.dumps(record, indent=4) + "\n")
    content["FILES_ROOTLETS"].remove(name)
    content["CORR_ROOTLETS"] = content.get("CORR_ROOTLETS", []) + [name]
    config.write_text(yaml.dump(content))
    return out


def _paint_level_4(voxels) -> None:
    voxels[1, 2, 3] = 4


def test_our_lists_and_manual_correction_py_keep_each_others_work(tmp_path):
    data = make_review_data(tmp_path)
    dataset, labels = data["data"], data["data"] / "derivatives" / "labels"
    names = {subject: path.relative_to(dataset).as_posix() for subject, path in data["images"].items()}
    session, _ = open_session(path_data=dataset, path_pred=data["pred"], rater="Jane Doe")
    with ReviewServer(session, 0) as server:
        client = Client(server.port, session.token)
        assert client.mark(1, "fail")[0] == 200 and client.mark(2, "fail")[0] == 200
    qc_fail = session.marks.qc_fail_path
    assert yaml.safe_load(qc_fail.read_text())["FILES_ROOTLETS"] == [names["sub-02"], names["sub-03"]]

    # the README's full command: the labels are found in PRED/labels, the corrections go to OUT
    corrected = lab_corrects(qc_fail, path_img=dataset, path_label=data["pred"] / "labels", path_out=labels,
                             rater="Lab Rater", edit=_paint_level_4)
    assert corrected == labels / "sub-02/anat/sub-02_T2w_label-rootlets_dseg.nii.gz"
    expected = np.asarray(nib.load(data["predictions"]["sub-02"]).dataobj).copy()
    _paint_level_4(expected)
    np.testing.assert_array_equal(np.asarray(nib.load(corrected).dataobj), expected)
    # without -path-label it finds no label and creates an empty mask for the next image
    empty = lab_corrects(qc_fail, path_img=dataset, path_label=labels, path_out=labels, rater="Lab Rater",
                         edit=lambda voxels: None)
    assert empty == labels / "sub-03/ses-01/anat/sub-03_ses-01_T2w_label-rootlets_dseg.nii.gz"
    assert not np.any(np.asarray(nib.load(empty).dataobj))
    theirs = qc_fail.read_text()
    assert yaml.safe_load(theirs) == {"FILES_ROOTLETS": [], "CORR_ROOTLETS": ["sub-02_T2w.nii.gz",
                                                                              "sub-03_ses-01_T2w.nii.gz"]}

    # -qc-fail on their file reviews what they corrected (CORR_ROOTLETS) ...
    again, _ = open_session(path_data=dataset, path_pred=data["pred"], qc_fail=qc_fail, rater="Jane Doe")
    assert [item.key for item in again.items] == ["sub-02", "sub-03/ses-01"]
    assert all(item.correction.is_file() for item in again.items)
    # ... and our next mark merges: their keys kept, the images corrected since they failed not listed again (it
    # would offer to overwrite the lab's correction in place), their version kept
    full, _ = open_session(path_data=dataset, path_pred=data["pred"], rater="Jane Doe")
    with ReviewServer(full, 0) as server:
        client = Client(server.port, full.token)
        assert client.mark(0, "fail")[0] == 200
        merged = yaml.safe_load(qc_fail.read_text())
        assert merged == {"FILES_ROOTLETS": [names["sub-01"]],
                          "CORR_ROOTLETS": ["sub-02_T2w.nii.gz", "sub-03_ses-01_T2w.nii.gz"]}
        kept = list((labels / "review" / "previous").glob("*/qc_fail.yml"))
        assert [path.read_text() for path in kept] == [theirs]
        # an image failed again after its correction is listed again
        assert client.mark(1, "fail")[0] == 200 and client.mark(0, "pass")[0] == 200
    assert yaml.safe_load(qc_fail.read_text()) == {"FILES_ROOTLETS": [names["sub-02"]],
                                                   "CORR_ROOTLETS": ["sub-02_T2w.nii.gz",
                                                                     "sub-03_ses-01_T2w.nii.gz"]}
    assert len(list((labels / "review" / "previous").glob("*/qc_fail.yml"))) == 1  # our own versions: no copies

    # the manifest pairs the lab's correction with its rater and leaves the empty mask out, with one warning
    manifest = tmp_path / "D2.tsv"
    result = run_cli("manifest", "-path-data", dataset, "-o", manifest, "-test-fraction", "0",
                     env_home=tmp_path / "home", command="sct_rootlets_dataset")
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(manifest, sep="\t", dtype=str, keep_default_na=False)
    assert dict(zip(table.subject, table.rater)) == {"sub-02": "Lab Rater"}
    warnings = [line for line in result.stderr.splitlines() if "empty" in line]
    assert len(warnings) == 1 and "sub-03_ses-01_T2w_label-rootlets_dseg.nii.gz" in warnings[0]
    kept_on_purpose = run_cli("manifest", "-path-data", dataset, "-o", tmp_path / "all.tsv", "-test-fraction", "0",
                              "-keep-empty-labels", env_home=tmp_path / "home", command="sct_rootlets_dataset")
    assert kept_on_purpose.returncode == 0 and "empty" not in kept_on_purpose.stderr
    assert list(pd.read_csv(tmp_path / "all.tsv", sep="\t", dtype=str).subject) == ["sub-02", "sub-03"]


def test_qc_fail_with_only_empty_lists_says_so(tmp_path):
    data = make_review_data(tmp_path)
    emptied = tmp_path / "qc_fail.yml"
    emptied.write_text("FILES_ROOTLETS: []\nCORR_ROOTLETS: []\n")
    result = run_cli("-path-data", data["data"], "-path-pred", data["pred"], "-qc-fail", emptied,
                     env_home=tmp_path / "home", command="sct_rootlets_review")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "lists no image to review: FILES_ROOTLETS is empty and CORR_ROOTLETS is empty" in result.stderr
    elsewhere = tmp_path / "elsewhere.yml"
    elsewhere.write_text("FILES_ROOTLETS:\n- sub-99_T2w.nii.gz\n")
    result = run_cli("-path-data", data["data"], "-path-pred", data["pred"], "-qc-fail", elsewhere,
                     env_home=tmp_path / "home", command="sct_rootlets_review")
    assert result.returncode == 1 and "none of the 1 image(s) listed" in result.stderr
