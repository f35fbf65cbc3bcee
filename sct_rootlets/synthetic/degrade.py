"""Graded degradations of labelled scans: the cases a quality score must rank below clean ones.

Each kind mimics a way real acquisitions go wrong, at a grade from 0 (untouched) to 1 (severe): thermal noise
(Rician), blur (thick slices, motion), a bias field (coil sensitivity), ghosting (phase-encoding replicas), a
cropped field of view (along the cord) and a shifted contrast (a tone curve). The labels stay exact: every kind
keeps the grid, except the crop, which cuts image and labels alike.
"""

from pathlib import Path
from typing import Sequence

import nibabel as nib
import numpy as np
from scipy import ndimage

from sct_rootlets.io.image import nifti_stem

DEGRADATIONS = ("noise", "blur", "bias", "ghosting", "crop", "contrast")


def _signal_level(image: np.ndarray) -> float:
    """A robust bright-tissue intensity (the 99th percentile of the non-zero voxels)."""
    values = image[image > 0]
    return float(np.percentile(values, 99)) if values.size else 1.0


def _noise(rng, image, zooms, grade):
    sigma = 0.25 * grade * _signal_level(image)
    return np.sqrt((image + rng.normal(0, sigma, image.shape)) ** 2 + rng.normal(0, sigma, image.shape) ** 2)


def _blur(rng, image, zooms, grade):
    return ndimage.gaussian_filter(image, 2.0 * grade / np.asarray(zooms, float))


def _bias(rng, image, zooms, grade):
    coarse = rng.normal(0, 1.2 * grade, (3, 3, 3))
    field = ndimage.zoom(coarse, np.asarray(image.shape) / 3, order=3, mode="nearest")[tuple(map(slice, image.shape))]
    return image * np.exp(field)


def _ghosting(rng, image, zooms, grade):
    """Replicas shifted by half the field of view along the antero-posterior axis (axis 1 of an RPI-like grid)."""
    shift = image.shape[1] // 2
    return image + 0.6 * grade * np.roll(image, shift, axis=1) + 0.3 * grade * np.roll(image, shift // 2, axis=1)


def _contrast(rng, image, zooms, grade):
    """A tone curve that flattens (or steepens) the bright end: gamma between 1/(1+3g) and 1+3g."""
    unit = np.clip(image / _signal_level(image), 0, None)
    gamma = (1 + 3 * grade) ** rng.choice([-1, 1])
    return unit ** gamma * _signal_level(image)


_ON_THE_GRID = {"noise": _noise, "blur": _blur, "bias": _bias, "ghosting": _ghosting, "contrast": _contrast}


def crop_box(rng, shape, grade: float, axis: int = 2) -> tuple:
    """Slices keeping 1 - 0.7 * grade of `axis` (the superior-inferior one of an RPI-like grid), cut from one
    end or both."""
    keep = max(int(round(shape[axis] * (1 - 0.7 * grade))), 1)
    start = int(rng.integers(0, shape[axis] - keep + 1))
    return tuple(slice(start, start + keep) if a == axis else slice(None) for a in range(len(shape)))


def degrade(rng, image: np.ndarray, zooms, kind: str, grade: float) -> tuple:
    """(degraded float32 image, the slices of the input it covers) for one kind at one grade in [0, 1]."""
    if kind not in DEGRADATIONS:
        raise ValueError(f"Unknown degradation {kind!r}; choose from {', '.join(DEGRADATIONS)}.")
    if not 0 <= grade <= 1:
        raise ValueError(f"Grade {grade} is outside [0, 1].")
    image = np.asarray(image, np.float32)
    if kind == "crop":
        box = crop_box(rng, image.shape, grade)
        return image[box], box
    return _ON_THE_GRID[kind](rng, image, zooms, grade).astype(np.float32), tuple(slice(None) for _ in image.shape)


def _cropped_like(nifti: nib.Nifti1Image, data: np.ndarray, box: tuple, dtype) -> nib.Nifti1Image:
    """`data` as an image whose affine places it where `box` was in `nifti`."""
    corner = [part.start or 0 for part in box]
    affine = nifti.affine.copy()
    affine[:3, 3] = nifti.affine[:3, :3] @ corner + nifti.affine[:3, 3]
    header = nifti.header.copy()
    header.set_data_dtype(dtype)
    return nib.Nifti1Image(np.asarray(data, dtype), affine, header)


def degrade_case(rng, image_path: Path, label_paths: Sequence[Path], output_image: Path, output_labels: Sequence[Path],
                 kind: str, grade: float) -> None:
    """Write one degraded image and its labels (cut alike for a crop)."""
    nifti = nib.load(image_path)
    data, box = degrade(rng, np.asanyarray(nifti.dataobj), nifti.header.get_zooms()[:3], kind, grade)
    output_image.parent.mkdir(parents=True, exist_ok=True)
    nib.save(_cropped_like(nifti, data, box, np.float32), output_image)
    for source, target in zip(label_paths, output_labels):
        label = nib.load(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        nib.save(_cropped_like(label, np.asanyarray(label.dataobj)[box], box, np.uint8), target)


def degraded_name(image_path: Path, kind: str, grade: float) -> str:
    """The degraded copy's BIDS stem: the degradation goes into an `acq-` entity (`acq-noise050`)."""
    subject, _, rest = nifti_stem(image_path).partition("_")
    return f"{subject}_acq-{kind}{int(round(grade * 100)):03d}_{rest}"
