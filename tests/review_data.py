"""Generated review sessions for tests/test_review*.py: a BIDS dataset, predictions as sct_rootlets_batch writes them,
and an HTTP client for the review server."""

import http.client
import json
import urllib.parse
from pathlib import Path

import nibabel as nib
import numpy as np

from conftest import ras_image, stored_as, synthetic_t2w

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
