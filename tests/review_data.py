"""Generated review sessions for tests/test_review*.py: a BIDS dataset, predictions as sct_rootlets_batch writes them,
and an HTTP client for the review server."""

import http.client
import json
import shutil
import urllib.parse
from pathlib import Path

import nibabel as nib
import numpy as np

from conftest import SHARED_DATA, ras_image, stored_as, synthetic_t2w

SHAPE = (24, 28, 20)
MODEL_ENTRY = {"Name": "sct_rootlets_batch -path-data ds -path-output preds", "Version": "0.1.0",
               "ModelURL": "https://example.org/model.zip"}
#: sub-01 stored as RAS, sub-02 as A-I-L (axes permuted and flipped), sub-03 with a session.
SUBJECTS = (("sub-01", None, ("R", "A", "S")), ("sub-02", None, ("A", "I", "L")), ("sub-03", "ses-01", ("L", "P", "S")))


def ras_labels(shape=SHAPE) -> np.ndarray:
    """One strand per level 2..5 (5 x 2 x 2 voxels each, apart from each other), in RAS voxel order."""
    labels = np.zeros(shape, np.uint8)
    for level in range(2, 6):
        z = 3 + (level - 2) * 4
        labels[6:11, 14:16, z:z + 2] = level
    return labels


def make_review_data(root: Path, suffix: str = "T2w") -> dict:
    """{'data': DS, 'pred': PRED (batch's OUT/derivatives), 'images': {sub: path}, 'predictions': {sub: path}}, the
    images named with this BIDS suffix."""
    data, pred = root / "ds", root / "preds" / "derivatives"
    images, predictions = {}, {}
    for index, (subject, session, axcodes) in enumerate(SUBJECTS, start=1):
        image = ras_image(synthetic_t2w(SHAPE, seed=index))
        labels = nib.Nifti1Image(ras_labels(), image.affine)
        folder = Path(subject, *([session] if session else []), "anat")
        stem = f"{subject}_{session}_{suffix}" if session else f"{subject}_{suffix}"
        (data / folder).mkdir(parents=True)
        images[subject] = data / folder / f"{stem}.nii.gz"
        nib.save(stored_as(image, axcodes, sform_code=2), images[subject])
        (pred / "labels" / folder).mkdir(parents=True)
        predictions[subject] = pred / "labels" / folder / f"{stem}_label-rootlets_dseg.nii.gz"
        nib.save(stored_as(labels, axcodes, sform_code=2), predictions[subject])
        sidecar = {"GeneratedBy": [MODEL_ENTRY], "Model": {"Name": "tiny", "FilesSHA256": "0" * 64}}
        predictions[subject].with_name(f"{stem}_label-rootlets_dseg.json").write_text(json.dumps(sidecar))
    (data / "dataset_description.json").write_text('{"Name": "review test", "BIDSVersion": "1.9.0"}')
    return {"data": data, "pred": pred, "images": images, "predictions": predictions}


#: Quality records (issue 29) written by hand into the prediction sidecars of `make_scored_review_data`: sub-03 the
#: worst, sub-01 next, sub-02 without a record, sub-04 with one that cannot be read (a score above 1).
QUALITY = {
    "sub-01": {"Score": 0.7, "Confidence": 0.8, "Flags": [],
               "Levels": {"C2": {"Score": 0.9, "Confidence": 0.9, "Voxels": 20},
                          "C3": {"Score": 0.7, "Confidence": 0.8, "Voxels": 20}}},
    "sub-02": None,
    "sub-03": {"Score": 0.2, "Confidence": 0.6,
               "Levels": {"C2": {"Score": 0.8, "Confidence": 0.9, "Voxels": 20},
                          "C4": {"Score": 0.2, "Confidence": None, "Voxels": 3}},
               "Flags": [{"Name": "missing_level", "Level": "C3", "Message": "No C3 rootlets between C2 and C4."},
                         {"Name": "small_level", "Level": "C4", "Message": "C4 has 3 voxels, far fewer than C2."}]},
    "sub-04": {"Score": 1.5, "Confidence": None, "Levels": {}, "Flags": []},
}


def make_scored_review_data(root: Path) -> dict:
    """`make_review_data` plus sub-04 (a copy of sub-01), each prediction's sidecar holding its `QUALITY` record."""
    data = make_review_data(root)
    for kind, base in (("images", data["data"]), ("predictions", data["pred"] / "labels")):
        source = data[kind]["sub-01"]
        target = base / "sub-04" / "anat" / source.name.replace("sub-01", "sub-04")
        target.parent.mkdir(parents=True)
        shutil.copyfile(source, target)
        data[kind]["sub-04"] = target
    for subject, record in QUALITY.items():
        sidecar = data["predictions"][subject].with_name(
            data["predictions"][subject].name.replace(".nii.gz", ".json"))
        content = {"GeneratedBy": [MODEL_ENTRY], "Model": {"Name": "tiny", "FilesSHA256": "0" * 64}}
        if record is not None:
            content["Quality"] = record
        sidecar.write_text(json.dumps(content))
    return data


class Client:
    """Raw HTTP to the review server (http.client sends paths exactly as given: no normalisation)."""

    def __init__(self, port: int, token: str = None):
        self.port, self.token = port, token

    def request(self, method: str, path: str, body: bytes = None, headers: dict = None, token="header"):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = dict(headers or {})
        if token == "header" and self.token:
            headers["X-Review-Token"] = self.token
        elif token == "query" and self.token:
            path += ("&" if "?" in path else "?") + "token=" + self.token
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        content = response.read()
        connection.close()
        return response.status, dict(response.getheaders()), content

    def get(self, path: str, **kwargs):
        return self.request("GET", path, **kwargs)

    def json(self, path: str):
        status, _, content = self.get(path)
        assert status == 200, content
        return json.loads(content)

    def labels(self, index: int) -> tuple:
        """(bytes, version) of what the page would open."""
        status, headers, content = self.get(f"/api/items/{index}/labels")
        assert status == 200, content
        return content, headers["X-Review-Version"]

    def save(self, index: int, nifti: bytes, base: str, rater: str = "Jane Doe", headers: dict = None):
        query = urllib.parse.urlencode({"base": base, "rater": rater})
        return self.request("POST", f"/api/items/{index}/save?{query}", body=nifti,
                            headers={"Content-Type": "application/octet-stream", **(headers or {})})

    def mark(self, index: int, mark: str):
        return self.request("POST", f"/api/items/{index}/mark", body=json.dumps({"mark": mark}).encode(),
                            headers={"Content-Type": "application/json"})


REAL_BIDS = SHARED_DATA / "real_bids"
#: Two real 1 mm scans of real_bids: sub-errsm11 as stored (P-S-R), sub-errsm24 rewritten in R-A-S storage.
REAL_SUBJECTS = (("sub-errsm11", None), ("sub-errsm24", ("R", "A", "S")))


def real_rootlets(cord: np.ndarray) -> np.ndarray:
    """A label map for a real scan (its own storage): for each level 2..9, a 3-voxel strand along the first axis,
    8 voxels from the cord's centre along the last axis, at heights spread over the cord's extent (second axis)."""
    labels = np.zeros(cord.shape, np.uint8)
    found = np.argwhere(cord > 0)
    low, high = found[:, 1].min(), found[:, 1].max()
    for level in range(2, 10):
        height = int(low + (high - low) * (level - 1) / 9)
        in_slice = found[found[:, 1] == height]
        centre = np.round(in_slice.mean(axis=0)).astype(int) if len(in_slice) else found.mean(axis=0).astype(int)
        labels[centre[0] - 1:centre[0] + 2, height, centre[2] + 8] = level
    return labels


def make_real_review_data(root: Path) -> dict:
    """REAL_SUBJECTS copied into a BIDS dataset under `root` (never written in the shared data) with their manual
    cord masks and a prediction from `real_rootlets` (made in the scan's own P-S-R storage, then stored as the
    image is); same keys as `make_review_data`, plus 'cords'."""
    data, pred = root / "ds", root / "preds" / "derivatives"
    out = {"data": data, "pred": pred, "images": {}, "predictions": {}, "cords": {}}
    for subject, axcodes in REAL_SUBJECTS:
        stem = f"{subject}_T2w"
        image = nib.load(REAL_BIDS / subject / "anat" / f"{stem}.nii.gz")
        cord_data = np.asarray(nib.load(REAL_BIDS / "derivatives" / "labels" / subject / "anat"
                                        / f"{stem}_label-SC_seg.nii.gz").dataobj).astype(np.uint8)
        files = {"images": image, "cords": nib.Nifti1Image(cord_data, image.affine, image.header),
                 "predictions": nib.Nifti1Image(real_rootlets(cord_data), image.affine, image.header)}
        paths = {"images": data / subject / "anat" / f"{stem}.nii.gz",
                 "cords": data / "derivatives" / "labels" / subject / "anat" / f"{stem}_label-SC_seg.nii.gz",
                 "predictions": pred / "labels" / subject / "anat" / f"{stem}_label-rootlets_dseg.nii.gz"}
        for kind, img in files.items():
            if kind != "images":
                img.set_data_dtype(np.uint8)
                img.header.set_slope_inter(1, 0)
            if axcodes:
                img = stored_as(img, axcodes)
            paths[kind].parent.mkdir(parents=True, exist_ok=True)
            nib.save(img, paths[kind])
            out[kind][subject] = paths[kind]
        sidecar = {"GeneratedBy": [MODEL_ENTRY], "Model": {"Name": "tiny", "FilesSHA256": "0" * 64}}
        paths["predictions"].with_name(f"{stem}_label-rootlets_dseg.json").write_text(json.dumps(sidecar))
    (data / "dataset_description.json").write_text('{"Name": "review test", "BIDSVersion": "1.9.0"}')
    return out
