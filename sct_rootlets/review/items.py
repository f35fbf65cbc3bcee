"""What a review session shows: each image of the dataset with its prediction, its cord mask and its correction.

Folders (all resolved to absolute paths once, so that every later check compares like with like):
- `data`: the BIDS dataset (`DS`), whose `sub-*/[ses-*/]anat/*_<suffix>` images are reviewed (`T2w` unless
  another suffix is chosen, see `bids.ImageSuffix`);
- `pred`: a derivatives folder holding predictions as `sct_rootlets_batch` writes them,
  `PRED/labels/sub-XX/[ses-YY/]anat/<stem>_label-rootlets_dseg.nii.gz` (a folder holding `sub-*` directly is taken
  as the labels folder itself; `_label-rootlets_desc-auto_dseg`, written by `sct_rootlets_dataset predict-to-bids`,
  is found too);
- `out`: where corrections go, `OUT/sub-XX/[ses-YY/]anat/<stem>_label-rootlets_dseg.nii.gz` (default
  `DS/derivatives/labels`). A correction already there is what the session opens.
"""

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from sct_rootlets.errors import RootletsError
from sct_rootlets.io import bids
from sct_rootlets.io.outputs import sidecar_path
from sct_rootlets.quality.record import Quality, read_quality

CORRECTION_SUFFIX = "_label-rootlets_dseg"
PREDICTION_SUFFIXES = ("_label-rootlets_dseg", "_label-rootlets_desc-auto_dseg")
CORD_SUFFIXES = ("_label-SC_seg", "_seg-manual", "_seg")
#: Where the session keeps its own files inside OUT: marks, the qc_fail.yml it writes, previous versions.
REVIEW_FOLDER = "review"
#: Inside it, where a version replaced is kept: `previous/<YYYY-MM-DDTHHMMSS.ffffff>/`.
PREVIOUS_FOLDER = "previous"


@dataclass(frozen=True)
class ReviewFolders:
    data: Path
    pred: Path
    out: Path

    @classmethod
    def of(cls, data, pred, out=None) -> "ReviewFolders":
        data = Path(data).expanduser()
        if not data.is_dir():
            raise RootletsError(f"The dataset folder {data} does not exist.")
        pred = Path(pred).expanduser()
        if not pred.is_dir():
            raise RootletsError(f"The predictions folder {pred} does not exist.")
        out = Path(out).expanduser() if out else data / "derivatives" / "labels"
        if out.exists() and not out.is_dir():
            raise RootletsError(f"The output folder {out} is not a folder.")
        out.mkdir(parents=True, exist_ok=True)
        return cls(data=data.resolve(), pred=pred.resolve(), out=out.resolve())

    @property
    def pred_labels(self) -> Path:
        """PRED/labels as sct_rootlets_batch writes it, else PRED itself when it holds sub-* folders."""
        labels = self.pred / "labels"
        return labels if labels.is_dir() or not any(self.pred.glob("sub-*")) else self.pred

    @property
    def review(self) -> Path:
        return self.out / REVIEW_FOLDER

    def previous(self, when: datetime.datetime) -> Path:
        """The folder that keeps the versions replaced at `when`."""
        return self.review / PREVIOUS_FOLDER / when.strftime("%Y-%m-%dT%H%M%S.%f")

    def writable(self, path: Path) -> Path:
        """`path`, when a file written there stays inside OUT: neither the path nor any folder on the way is a
        symlink leading out of OUT, and the path is no symlink itself (a reader would follow it). Else
        RootletsError: a link planted in OUT must not carry corrections, marks or lists elsewhere."""
        path = Path(path)
        try:
            folder = path.parent.resolve()
        except (OSError, RuntimeError):  # a symlink loop
            folder = None
        if folder is None or not folder.is_relative_to(self.out) or path.is_symlink():
            raise RootletsError(f"Refused to write {path}: it is a symbolic link or lies in a folder linked outside "
                                f"the output folder {self.out}.")
        return path

    def roots(self) -> dict:
        """The folders whose files the server may serve, by the name used in its URLs."""
        return {"data": self.data, "pred": self.pred, "out": self.out}


@dataclass(frozen=True)
class ReviewItem:
    """One image to review. `prediction` is never written; `correction` may not exist yet. `quality`: the
    prediction's quality record (issue 29), read once when the session opens; None without one."""
    image: bids.BidsImage
    prediction: Optional[Path]
    correction: Path
    cord: Optional[Path]
    quality: Optional[Quality] = None

    @property
    def key(self) -> str:
        return self.image.key

    @property
    def name(self) -> str:
        """The image's path in the dataset, 'sub-01/anat/sub-01_T2w.nii.gz': how lists name it."""
        return f"{self.image.relative_folder.as_posix()}/{self.image.path.name}"

    @property
    def correction_sidecar(self) -> Path:
        return sidecar_path(self.correction)

    @property
    def prediction_sidecar(self) -> Optional[Path]:
        if self.prediction is None:
            return None
        sidecar = sidecar_path(self.prediction)
        return sidecar if sidecar.is_file() else None

    def labels_path(self) -> Optional[Path]:
        """What the page opens: the correction when there is one, else the prediction."""
        return self.correction if self.correction.is_file() else self.prediction


def _first_file(folder: Path, stem: str, suffixes, exclude: Optional[Path] = None) -> Optional[Path]:
    for suffix in suffixes:
        candidate = folder / f"{stem}{suffix}.nii.gz"
        if candidate.is_file() and candidate.resolve() != exclude:
            return candidate
    return None


def item_for(image: bids.BidsImage, folders: ReviewFolders) -> ReviewItem:
    correction = folders.out / image.relative_folder / f"{image.stem}{CORRECTION_SUFFIX}.nii.gz"
    # A file in PRED that is also the correction (PRED and OUT the same folder) is a correction, not a prediction.
    prediction = _first_file(folders.pred_labels / image.relative_folder, image.stem, PREDICTION_SUFFIXES,
                             exclude=correction.resolve())
    cord = image.labels.get("cord") or _first_file(folders.pred_labels / image.relative_folder, image.stem,
                                                    CORD_SUFFIXES)
    quality = read_quality(sidecar_path(prediction)) if prediction else None
    return ReviewItem(image=image, prediction=prediction, correction=correction, cord=cord, quality=quality)


def find_items(folders: ReviewFolders, *, include: Optional[str] = None, listed: Optional[list] = None,
               suffix=bids.DEFAULT_SUFFIX) -> tuple:
    """(items, left_out): the images to review (those `suffix` selects), in dataset order, and (image path, reason)
    for those left out.

    `include` selects as `sct_rootlets_batch -include` does (a regex, a list, or a file of `sub-XX[/ses-YY]` names
    such as our viewer's `qc_fail_subjects.txt`); `listed` is a list of image paths (from a `qc_fail.yml`),
    matched by file name. Images with neither a prediction nor a correction are left out.
    """
    images, _skipped = bids.discover(folders.data, suffix)
    images = bids.select(images, include) if include else images
    left_out = []
    if listed is not None:
        names = {Path(str(entry)).name for entry in listed}
        found = {image.path.name for image in images}
        left_out += [(entry, f"listed, but not a {suffix} image of the dataset") for entry in listed
                     if Path(str(entry)).name not in found]
        images = [image for image in images if image.path.name in names]
    items = []
    for image in images:
        item = item_for(image, folders)
        if item.prediction is None and not item.correction.is_file():
            left_out.append((image.path, f"no prediction in {folders.pred_labels / image.relative_folder}"))
        else:
            items.append(item)
    return items, left_out
