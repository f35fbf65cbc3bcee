"""Finding the T2w images of a BIDS dataset, and the manual labels that come with them.

Images: `sub-<label>/[ses-<label>/]anat/*_T2w.nii[.gz]` (any acq-/run- entities); `derivatives/` and anything
that is not a subject folder are skipped, with a reason for each skipped file. Manual labels, when present, are
read from `derivatives/labels/<same folder>/<image stem>_<suffix>.nii.gz` (spine-generic naming):
cord `_label-SC_seg`, PMJ `_label-PMJ_dlabel`, discs `_label-disc_dlabel` (older `_seg-manual`, `_pmj-manual`,
`_labels-disc-manual` also accepted).
"""

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from sct_rootlets.io.image import nifti_stem

LABEL_SUFFIXES = {
    "cord": ("_label-SC_seg", "_seg-manual"),
    "pmj": ("_label-PMJ_dlabel", "_pmj-manual"),
    "discs": ("_label-disc_dlabel", "_labels-disc-manual"),
}
_ENTITY = re.compile(r"(?:^|_)(sub|ses|acq|run)-([A-Za-z0-9]+)")


@dataclass(frozen=True)
class BidsImage:
    """One T2w image to process and the manual labels found for it."""
    path: Path
    subject: str                  # "sub-01"
    session: Optional[str]        # "ses-01" or None
    labels: dict = field(default_factory=dict)  # kind ("cord", "pmj", "discs") -> Path

    @property
    def stem(self) -> str:
        return nifti_stem(self.path)

    @property
    def relative_folder(self) -> Path:
        """sub-XX/[ses-YY/]anat, as in the raw dataset and its derivatives."""
        return Path(self.subject, *([self.session] if self.session else []), "anat")

    @property
    def key(self) -> str:
        """sub-XX[/ses-YY]: what sct_run_batch passes as $1 and what -include/-exclude match."""
        return f"{self.subject}/{self.session}" if self.session else self.subject


def entities(filename: str) -> dict:
    """{'sub': '01', 'ses': '02', 'acq': 'sag', 'run': '1'} from a BIDS file name."""
    return {key: value for key, value in _ENTITY.findall(filename)}


def _manual_labels(dataset: Path, relative_folder: Path, stem: str) -> dict:
    folder = dataset / "derivatives" / "labels" / relative_folder
    found = {}
    for kind, suffixes in LABEL_SUFFIXES.items():
        for suffix in suffixes:
            for extension in (".nii.gz", ".nii"):
                candidate = folder / f"{stem}{suffix}{extension}"
                if candidate.is_file() and kind not in found:
                    found[kind] = candidate
    return found


def _anat_folders(subject_dir: Path):
    """(session or None, anat folder) of a subject, sessions in order."""
    if (subject_dir / "anat").is_dir():
        yield None, subject_dir / "anat"
    for session_dir in sorted(subject_dir.glob("ses-*")):
        if (session_dir / "anat").is_dir():
            yield session_dir.name, session_dir / "anat"


def discover(dataset: Path) -> tuple:
    """(images, skipped): every *_T2w image of the dataset, and (path, reason) for what was left out."""
    dataset = Path(dataset)
    images, skipped = [], []
    for entry in sorted(dataset.iterdir()):
        if entry.name == "derivatives" or not entry.is_dir():
            continue
        if not entry.name.startswith("sub-"):
            skipped.append((entry, "not a subject folder"))
            continue
        folders = list(_anat_folders(entry))
        if not folders:
            skipped.append((entry, "no anat folder"))
        for session, anat in folders:
            for path in sorted(anat.iterdir()):
                if not path.name.endswith((".nii.gz", ".nii")):
                    continue
                if not nifti_stem(path).endswith("_T2w"):
                    skipped.append((path, "not a T2w image"))
                    continue
                relative = Path(entry.name, *([session] if session else []), "anat")
                images.append(BidsImage(path=path, subject=entry.name, session=session,
                                        labels=_manual_labels(dataset, relative, nifti_stem(path))))
    return images, skipped


def select(images: list, include: Optional[str] = None, exclude: Optional[str] = None) -> list:
    """Filter by `sub-XX[/ses-YY]`: each of include/exclude is a file of names (one per line, e.g. the QC
    viewer's export), a list of names separated by spaces or commas, or else a regular expression."""
    def matcher(spec: str):
        if Path(spec).is_file():
            names = set(Path(spec).read_text(encoding="utf-8").split())
        else:
            tokens = re.split(r"[\s,]+", spec.strip())
            names = set(tokens) if all(t.startswith("sub-") and re.fullmatch(r"[\w/-]+", t) for t in tokens) else None
        if names is not None:
            return lambda image: image.key in names or image.subject in names
        pattern = re.compile(spec)
        return lambda image: bool(pattern.search(image.key))

    chosen = images
    if include:
        keep = matcher(include)
        chosen = [image for image in chosen if keep(image)]
    if exclude:
        drop = matcher(exclude)
        chosen = [image for image in chosen if not drop(image)]
    return chosen


def variant_paths(output: Path, image, k: int, tag: str = "aug") -> tuple:
    """(anat folder, label folder, file stem, image path) of variant k of a BIDS image, in session
    `ses-<its session><tag><k>`."""
    session = f"ses-{(image.session or 'ses-')[4:]}{tag}{k:02d}"  # a session's variants stay apart
    rest = image.stem[len(image.subject):]
    stem = f"{image.subject}_{session}{rest.replace(f'_{image.session}', '') if image.session else rest}"
    anat = output / image.subject / session / "anat"
    return anat, output / "derivatives" / "labels" / image.subject / session / "anat", stem, anat / f"{stem}.nii.gz"
