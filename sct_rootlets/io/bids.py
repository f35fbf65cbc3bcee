"""Finding the images of one contrast in a BIDS dataset, and the manual labels that come with them.

Images: `sub-<label>/[ses-<label>/]anat/*_<suffix>.nii[.gz]`; `derivatives/` and anything that is not a subject
folder are skipped, with a reason for each skipped file. Which images: an `ImageSuffix` such as `T2w` (the default),
`UNIT1`, `MTS` or `inv-1_MP2RAGE`: a BIDS suffix (the last part of the name) and, optionally, entities the name must
hold too, wherever they sit among its other entities (`sub-01_inv-1_part-mag_MP2RAGE` is `inv-1_MP2RAGE`).
Manual labels, when present, are read from `derivatives/labels/<same folder>/<image stem>_<suffix>.nii.gz`
(spine-generic naming): cord `_label-SC_seg`, PMJ `_label-PMJ_dlabel`, discs `_label-disc_dlabel` (older
`_seg-manual`, `_pmj-manual`, `_labels-disc-manual` also accepted).
"""

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from sct_rootlets.io.image import nifti_stem

logger = logging.getLogger(__name__)

LABEL_SUFFIXES = {
    "cord": ("_label-SC_seg", "_seg-manual"),
    "pmj": ("_label-PMJ_dlabel", "_pmj-manual"),
    "discs": ("_label-disc_dlabel", "_labels-disc-manual"),
}
DEFAULT_SUFFIX = "T2w"
#: Model cards name MP2RAGE's inversion images as RootletSeg does; any other image's contrast is its BIDS suffix.
CARD_CONTRAST_SUFFIXES = {"T1w-INV1": "inv-1_MP2RAGE", "T1w-INV2": "inv-2_MP2RAGE"}
CHANNEL_SEPARATOR = "+"
_SUFFIX_SPEC = re.compile(r"(?:[A-Za-z0-9]+-[A-Za-z0-9]+_)*[A-Za-z0-9]+")


def name_parts(stem: str) -> tuple:
    """({'sub': '01', 'inv': '1'}, 'MP2RAGE') from 'sub-01_inv-1_MP2RAGE'; the suffix is None when the last part
    is an entity (not a BIDS image name)."""
    parts = stem.split("_")
    found = dict(part.split("-", 1) for part in parts if "-" in part)
    return found, (parts[-1] if "-" not in parts[-1] else None)


def _same_value(found: Optional[str], wanted: str) -> bool:
    if found is not None and found.isdigit() and wanted.isdigit():
        return int(found) == int(wanted)
    return found == wanted


@dataclass(frozen=True)
class ImageSuffix:
    """Which images of a dataset to process: a BIDS suffix, and entities their names must hold as well."""
    suffix: str
    entities: tuple = ()          # (("inv", "1"),)

    @classmethod
    def parse(cls, text: str) -> "ImageSuffix":
        """'inv-1_MP2RAGE' -> ImageSuffix('MP2RAGE', (('inv', '1'),)); ValueError for anything else."""
        if not _SUFFIX_SPEC.fullmatch(text or ""):
            raise ValueError(f"{text!r} is not a BIDS suffix, optionally after entities (such as T2w, UNIT1, MTS "
                             f"or inv-1_MP2RAGE)")
        found, suffix = name_parts(text)
        return cls(suffix, tuple(found.items()))

    def matches(self, stem: str) -> bool:
        """Whether a BIDS image name (one with a sub- entity) has this suffix and these entities (an index: inv-1
        equals inv-01)."""
        found, suffix = name_parts(stem)
        return (suffix == self.suffix and "sub" in found
                and all(_same_value(found.get(key), value) for key, value in self.entities))

    def __str__(self) -> str:
        return "_".join([*(f"{key}-{value}" for key, value in self.entities), self.suffix])


def card_contrast(stem: str) -> str:
    """The contrast a model card names for an image: 'T1w-INV1' for '..._inv-1_MP2RAGE', else its BIDS suffix."""
    for contrast, suffix in CARD_CONTRAST_SUFFIXES.items():
        if ImageSuffix.parse(suffix).matches(stem):
            return contrast
    return name_parts(stem)[1] or stem


def suffix_of_contrast(contrast: str) -> str:
    """What `-suffix` selects a model card's contrast with: 'inv-1_MP2RAGE' for 'T1w-INV1', else the name itself."""
    return CARD_CONTRAST_SUFFIXES.get(contrast, contrast)


def channel_name(contrasts) -> str:
    """nnU-Net's name of a dataset's one input channel: its images' contrasts, 'T2w' or 'T1w-INV1+UNIT1' (any name
    but CT and a few reserved ones means z-score normalisation to nnU-Net)."""
    return CHANNEL_SEPARATOR.join(sorted(set(contrasts)))


def channel_contrasts(name: str) -> tuple:
    """The contrasts a channel name (see `channel_name`) lists."""
    return tuple(name.split(CHANNEL_SEPARATOR))


def warn_unlisted_contrasts(images: list, model_name: str, listed) -> Optional[str]:
    """Log (and return) one line naming the images' contrasts that the model does not list, if any (a model that
    lists none is not judged): it may still segment them, but nobody has checked how well."""
    unlisted = sorted({image.contrast for image in images} - set(listed))
    if not unlisted or not listed:
        return None
    warning = (f"Warning: model {model_name} lists the contrast(s) {', '.join(listed)}, not "
               f"{', '.join(unlisted)}: its results on these images are unchecked.")
    logger.warning(warning)
    return warning


@dataclass(frozen=True)
class BidsImage:
    """One image to process and the manual labels found for it."""
    path: Path
    subject: str                  # "sub-01"
    session: Optional[str]        # "ses-01" or None
    labels: dict = field(default_factory=dict)  # kind ("cord", "pmj", "discs") -> Path

    @property
    def stem(self) -> str:
        return nifti_stem(self.path)

    @property
    def contrast(self) -> str:
        """Its contrast as model cards name it (see `card_contrast`)."""
        return card_contrast(self.stem)

    @property
    def relative_folder(self) -> Path:
        """sub-XX/[ses-YY/]anat, as in the raw dataset and its derivatives."""
        return Path(self.subject, *([self.session] if self.session else []), "anat")

    @property
    def key(self) -> str:
        """sub-XX[/ses-YY]: what sct_run_batch passes as $1 and what -include/-exclude match."""
        return f"{self.subject}/{self.session}" if self.session else self.subject


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


def discover(dataset: Path, suffix=DEFAULT_SUFFIX) -> tuple:
    """(images, skipped): every image of the dataset that `suffix` (an ImageSuffix or its text) selects, and
    (path, reason) for what was left out."""
    dataset = Path(dataset)
    wanted = suffix if isinstance(suffix, ImageSuffix) else ImageSuffix.parse(suffix)
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
                if not wanted.matches(nifti_stem(path)):
                    skipped.append((path, f"not a {wanted} image"))
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
