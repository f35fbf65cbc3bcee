"""Saving a correction: check the upload, refuse a stale tab, keep the previous version, write image + sidecar.

An upload is refused, with one sentence saying why, unless it is a NIfTI image (.nii, or gzipped) no larger than the
limit, on the image's grid (shape and voxel-to-world affine) and holding whole label values of the model's range.
The saved file is rebuilt on the image's exact grid (uint8; shape, affine, qform/sform and their codes from the
image), so nothing of the upload's header survives but its voxels.

A save names the version of the correction its tab loaded (the SHA-256 of the file, or "none" when there was no
correction yet); a different version on disk means another tab or person saved since, and the save is refused.
The version replaced is first copied to `OUT/review/previous/<time>/<sub>/[<ses>/]anat/` (image and sidecar).
"""

import datetime
import gzip
import hashlib
import io
import json
import shutil
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from sct_rootlets.errors import InputImageError, RootletsError
from sct_rootlets.io.image import load_input_image
from sct_rootlets.io.outputs import write_label_map
from sct_rootlets.review.items import ReviewFolders, ReviewItem

#: Label values a correction may hold: 0 background, the model's lvl1..lvl9 (2=C2 ... 9=T1 in the rootlets models).
LABEL_VALUES = tuple(range(0, 10))
#: Bytes per voxel an upload may use at most (float64), plus room for a header with extensions.
UPLOAD_BYTES_PER_VOXEL = 8
UPLOAD_HEADER_BYTES = 1 << 20
NO_VERSION = "none"
GRID_TOLERANCE_MM = 1e-3
MAX_RATER_CHARACTERS = 200


class UploadRefused(RootletsError):
    """A save that was refused; `status` is the HTTP status that says why."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class SaveResult:
    path: Path
    sidecar: Path
    version: str
    previous: Path = None  # the folder the replaced version was copied to, if any
    voxels_changed: int = 0


def file_version(path: Path) -> str:
    """The SHA-256 of a file, or "none" if it does not exist."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except FileNotFoundError:
        return NO_VERSION


def upload_limit_bytes(shape) -> int:
    return int(np.prod(shape[:3], dtype=np.int64)) * UPLOAD_BYTES_PER_VOXEL + UPLOAD_HEADER_BYTES


def _gunzip(data: bytes, limit: int) -> bytes:
    """Decompress at most `limit` bytes (a small gzip bomb must not fill the memory), and only a whole stream whose
    CRC and length check out: a cut or damaged file must not pass for a correction."""
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        raw = decompressor.decompress(data, limit + 1)
    except zlib.error:
        raise UploadRefused("The upload is not a NIfTI image: its gzip data is corrupt (checksum or format).") from None
    if len(raw) > limit or decompressor.unconsumed_tail:
        raise UploadRefused(f"The upload is too large once decompressed (more than {limit} bytes).", 413)
    if not decompressor.eof or decompressor.unused_data:
        raise UploadRefused("The upload is not a NIfTI image: its gzip data is cut short or followed by other "
                            "data.")
    return raw


def parse_upload(data: bytes, limit: int) -> nib.Nifti1Image:
    """The NIfTI image in `data` (plain or gzipped), or UploadRefused."""
    if len(data) > limit:
        raise UploadRefused(f"The upload is too large ({len(data)} bytes; at most {limit} for this image).", 413)
    raw = _gunzip(data, limit) if data[:2] == b"\x1f\x8b" else data
    for image_class, magic_at in ((nib.Nifti1Image, 344), (nib.Nifti2Image, 4)):
        if raw[magic_at:magic_at + 4] in (b"n+1\x00", b"n+2\x00"):
            try:
                return image_class.from_bytes(raw)
            except Exception as exc:  # nibabel raises many kinds for a broken header
                raise UploadRefused(f"The upload is not a readable NIfTI image: {exc}.") from None
    raise UploadRefused("The upload is not a NIfTI image (.nii or .nii.gz).", 415)


def check_labels(upload: nib.Nifti1Image, reference: nib.Nifti1Image, allowed=LABEL_VALUES) -> np.ndarray:
    """The upload's voxels as uint8 labels, if it lies on the reference's grid and holds allowed values."""
    shape = upload.shape
    if len(shape) < 3 or shape[:3] != reference.shape[:3] or any(n != 1 for n in shape[3:]):
        raise UploadRefused(f"The upload is not on the image's grid: shape {tuple(shape)}, the image's is "
                            f"{tuple(reference.shape[:3])}.", 422)
    if upload.get_data_dtype().kind not in "buif":  # complex, RGB: a label map holds plain real numbers
        raise UploadRefused(f"The upload stores {upload.get_data_dtype()} voxels; a label map holds integer or "
                            f"real numbers.", 422)
    if not np.allclose(upload.affine, reference.affine, atol=GRID_TOLERANCE_MM):
        raise UploadRefused("The upload is not on the image's grid: its voxel-to-world affine differs from the "
                            "image's.", 422)
    try:
        data = np.asarray(upload.get_fdata(dtype=np.float64)).reshape(reference.shape[:3])
    except Exception as exc:
        raise UploadRefused(f"The upload's voxels cannot be read: {exc}.") from None
    if not np.all(np.isfinite(data)) or not np.array_equal(data, np.round(data)):
        raise UploadRefused("The upload holds values that are not whole label numbers.", 422)
    values = {int(v) for v in np.unique(data)}
    bad = sorted(values - set(allowed))
    if bad:
        raise UploadRefused(f"The upload holds label value(s) {', '.join(map(str, bad[:10]))} outside the model's "
                            f"range {min(allowed)}..{max(allowed)}.", 422)
    return data.astype(np.uint8)


def _read_json(path) -> dict:
    if path is None or not Path(path).is_file():
        return {}
    try:
        content = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}


def corrected_sidecar(item: ReviewItem, rater: str, when: datetime.datetime) -> dict:
    """The sidecar of a new version: the correction's sidecar if there is one, else the prediction's (the model's
    `GeneratedBy` entry, model and options kept), with a `Manual` entry appended to `GeneratedBy`."""
    sidecar = _read_json(item.correction_sidecar) if item.correction.is_file() else {}
    if not sidecar:
        sidecar = _read_json(item.prediction_sidecar)
    generated_by = sidecar.get("GeneratedBy")
    generated_by = list(generated_by) if isinstance(generated_by, list) else []
    generated_by.append({"Name": "Manual", "Author": rater, "Date": when.isoformat(timespec="seconds")})
    return {**sidecar, "GeneratedBy": generated_by}


def keep_previous_version(item: ReviewItem, folders: ReviewFolders, when: datetime.datetime,
                          image_bytes: bytes = None) -> Path:
    """Copy the correction and its sidecar to `OUT/review/previous/<time>/...` (`image_bytes`: the image's
    content to keep instead of the file's)."""
    folder = folders.previous(when) / item.image.relative_folder
    folders.writable(folder / item.correction.name)
    folder.mkdir(parents=True, exist_ok=True)
    for path in (item.correction, item.correction_sidecar):
        if path == item.correction and image_bytes is not None:
            (folder / path.name).write_bytes(image_bytes)
        elif path.is_file():
            shutil.copy2(path, folder / path.name)
    return folder


def clean_rater(rater, *, required: bool) -> str:
    """The rater's name as every record keeps it (saves, marks, desktop viewers): whitespace runs made one space,
    no control characters, at most MAX_RATER_CHARACTERS; `required` refuses an empty name."""
    rater = " ".join("".join(ch for ch in str(rater or "") if ch.isprintable() or ch.isspace()).split())
    if required and not rater:
        raise UploadRefused("Give your name as the rater (the page's Rater field, or -rater) before saving.")
    if len(rater) > MAX_RATER_CHARACTERS:
        raise UploadRefused(f"The rater's name is too long ({MAX_RATER_CHARACTERS} characters at most).")
    return rater


class CorrectionWriter:
    """Saves corrections of one session; saves of all its tabs go through one lock, so the stale check and the
    write are one step."""

    def __init__(self, folders: ReviewFolders, allowed=LABEL_VALUES):
        self.folders = folders
        self.allowed = tuple(allowed)
        self._lock = threading.Lock()

    def reference(self, item: ReviewItem) -> nib.Nifti1Image:
        try:
            return load_input_image(item.image.path).nifti
        except InputImageError as exc:
            raise UploadRefused(f"Cannot read the image to correct: {exc}", 500) from None

    def _writable(self, path: Path) -> Path:
        try:
            return self.folders.writable(path)
        except RootletsError as exc:
            raise UploadRefused(str(exc), 403) from None

    def limit(self, item: ReviewItem) -> int:
        return upload_limit_bytes(nib.load(item.image.path).shape)

    def save(self, item: ReviewItem, data: bytes, *, base_version: str, rater: str,
             keep_previous: bool = True) -> SaveResult:
        """Check and write one correction; `keep_previous=False` when the caller kept the version replaced."""
        rater = clean_rater(rater, required=True)
        for path in (item.correction, item.correction_sidecar):
            self._writable(path)
        reference = self.reference(item)
        labels = check_labels(parse_upload(data, upload_limit_bytes(reference.shape)), reference, self.allowed)
        with self._lock:
            current = file_version(item.correction)
            if base_version != current:
                raise UploadRefused(
                    f"Not saved: {item.correction.name} changed since this tab loaded it (saved from another tab "
                    f"or by someone else). Reload the image to see that version, then redo your edits.", 409)
            when = datetime.datetime.now().astimezone()
            before = item.labels_path()
            changed = int(np.count_nonzero(labels != np.asarray(nib.load(before).dataobj).reshape(labels.shape))) \
                if before is not None and before.is_file() else int(np.count_nonzero(labels))
            previous = (keep_previous_version(item, self.folders, when)
                        if keep_previous and item.correction.is_file() else None)
            write_label_map(item.correction, item.correction_sidecar, labels, reference,
                            corrected_sidecar(item, rater, when), overwrite=True)
            return SaveResult(path=item.correction, sidecar=item.correction_sidecar,
                              version=file_version(item.correction), previous=previous, voxels_changed=changed)


def nifti_bytes(image: nib.Nifti1Image, compress: bool = True) -> bytes:
    """An in-memory .nii(.gz): what a client uploads (tests, scripts)."""
    raw = image.to_bytes()
    if not compress:
        return raw
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as stream:
        stream.write(raw)
    return buffer.getvalue()
