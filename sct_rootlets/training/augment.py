"""Realistic variants of labelled real scans: other fields of view, resolutions, poses and contrasts.

A few labelled real scans are all a lab may have; a network trained on them alone learns their field of view,
resolution and scanner. Each variant here resamples one scan (and its label, identically) onto a new grid:
- a field of view from a 50 mm slab to the whole scan, centred near a labelled voxel;
- voxels of 0.5-1.3 mm, isotropic or with one thick axis (1.5-3.5 mm, as in axial or sagittal 2D stacks),
  blurred before sampling as a coarser acquisition would be;
- a small rotation (neck flexion up to 12 degrees, 6 about the other axes), stored in the affine as an oblique
  acquisition stores it, so world coordinates of anatomy and label do not move;
then gamma, a smooth bias field and noise change its contrast. With `remap_share`, that share of the variants
first sends its intensities through a random curve (inverted or non-monotonic, air kept dark as in every MR
contrast): the SynthSeg idea applied to real scans, so that a network learns the anatomy rather than one contrast
(a cord model trained on T2w alone learns "darker than the CSF" and misses the cord on T1w). Variants of one
subject are written as sessions of that subject (`ses-augNN`), so subject-wise folds keep them together.
"""

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from sct_rootlets.io import bids
from sct_rootlets.errors import InputImageError, OutputError
from sct_rootlets.io.image import load_input_image, load_label_image


@dataclass(frozen=True)
class AugmentOptions:
    min_extent_mm: float = 50.0
    voxel_mm: tuple = (0.5, 1.3)
    thick_voxel_mm: tuple = (1.5, 3.5)
    thick_share: float = 0.4
    max_rotation_deg: tuple = (12.0, 6.0, 6.0)  # about left-right (flexion), antero-posterior, supero-inferior
    gamma: tuple = (0.7, 1.5)
    bias_strength: float = 0.35
    noise: tuple = (0.0, 0.05)                  # Gaussian sigma, relative to the 99th intensity percentile
    remap_share: float = 0.0                    # share of variants whose intensities go through a random curve
    remap_knots: tuple = (3, 8)                 # control points of that curve
    dark_air_share: float = 0.8                 # share of remapped variants whose darkest intensities stay dark


def _output_voxel_mm(rng, options: AugmentOptions) -> np.ndarray:
    if rng.random() < options.thick_share:
        zooms = np.full(3, rng.uniform(options.voxel_mm[0], 1.0))
        zooms[rng.integers(3)] = rng.uniform(*options.thick_voxel_mm)
        return zooms
    return np.full(3, rng.uniform(*options.voxel_mm))


def _rotation(rng, options: AugmentOptions) -> np.ndarray:
    """A random rotation in world (RAS) space, as a 3x3 matrix."""
    angles = [rng.uniform(-limit, limit) for limit in options.max_rotation_deg]
    return Rotation.from_euler("xyz", angles, degrees=True).as_matrix()


def variant_grid(rng, shape, affine: np.ndarray, label: np.ndarray, options: AugmentOptions) -> tuple:
    """(output shape, output affine, 4x4 map from output voxel to input voxel) of one random variant."""
    input_zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    directions = affine[:3, :3] / input_zooms
    output_zooms = _output_voxel_mm(rng, options)
    full_extent = np.asarray(shape) * input_zooms
    extent = np.array([rng.uniform(min(options.min_extent_mm, e), e) for e in full_extent])
    output_shape = np.maximum(np.round(extent / output_zooms).astype(int), 8)
    labelled = np.argwhere(label > 0)
    centre_voxel = labelled[rng.integers(len(labelled))] if len(labelled) else np.asarray(shape) / 2
    centre_voxel = centre_voxel + rng.uniform(-0.25, 0.25, 3) * extent / input_zooms
    rotation = directions.T @ _rotation(rng, options) @ directions  # in the input's voxel frame
    linear = np.diag(1 / input_zooms) @ rotation @ np.diag(output_zooms)
    offset = centre_voxel - linear @ ((output_shape - 1) / 2)
    to_input = np.eye(4)
    to_input[:3, :3], to_input[:3, 3] = linear, offset
    return tuple(int(s) for s in output_shape), affine @ to_input, to_input


def _resample(data: np.ndarray, to_input: np.ndarray, output_shape, input_zooms, output_zooms) -> np.ndarray:
    """Linear resampling; blurred first where the new voxels are coarser, as a coarser acquisition averages."""
    sigma = np.maximum(np.asarray(output_zooms) / np.asarray(input_zooms) - 1, 0) * 0.5
    smoothed = ndimage.gaussian_filter(data, sigma) if np.any(sigma > 0) else data
    return ndimage.affine_transform(smoothed, to_input[:3, :3], to_input[:3, 3], output_shape=output_shape,
                                    order=1, mode="constant", cval=0.0)


def _bias_field(rng, shape, strength: float) -> np.ndarray:
    coarse = rng.normal(0, strength, (3, 3, 3))
    return np.exp(ndimage.zoom(coarse, np.asarray(shape) / 3, order=3, mode="nearest")[tuple(map(slice, shape))])


def random_intensity_curve(rng, unit: np.ndarray, options: AugmentOptions) -> np.ndarray:
    """Intensities scaled to about 0..1 sent through a random piecewise-linear curve: half the time an inversion
    with jitter (T2w -> T1-like: CSF dark, cord bright), else any shape, so that tissues swap order at random."""
    knots = int(rng.integers(options.remap_knots[0], options.remap_knots[1] + 1))
    where = np.linspace(0.0, 1.0, knots)
    if rng.random() < 0.5:
        values = np.clip(1.0 - where + rng.uniform(-0.15, 0.15, knots), 0.0, 1.0)
    else:
        values = rng.uniform(0.0, 1.0, knots)
    if rng.random() < options.dark_air_share:
        values[0] = 0.0
    return np.interp(np.clip(unit, 0.0, 1.0), where, values).astype(np.float32)


def _contrast(rng, image: np.ndarray, options: AugmentOptions) -> np.ndarray:
    scale = np.percentile(image, 99) or 1.0
    unit = np.clip(image / scale, 0, None)
    if options.remap_share > 0 and rng.random() < options.remap_share:  # no draw when off: seeds keep their variants
        unit = random_intensity_curve(rng, unit, options)
    unit = unit ** rng.uniform(*options.gamma)
    unit = unit * _bias_field(rng, image.shape, options.bias_strength)
    unit = unit + rng.normal(0, rng.uniform(*options.noise), image.shape)
    return (np.clip(unit, 0, None) * scale).astype(np.float32)


def augment_case(rng, image: nib.Nifti1Image, label: np.ndarray, options: AugmentOptions = AugmentOptions()) -> tuple:
    """(image, label) of one random variant; the label is uint8 0/1 (or its values, nearest) on the new grid."""
    data = np.asarray(image.dataobj, dtype=np.float32)
    output_shape, output_affine, to_input = variant_grid(rng, data.shape, image.affine, label, options)
    input_zooms = np.sqrt((image.affine[:3, :3] ** 2).sum(axis=0))
    output_zooms = np.sqrt((output_affine[:3, :3] ** 2).sum(axis=0))
    warped = _resample(data, to_input, output_shape, input_zooms, output_zooms)
    values = np.unique(label[label > 0])
    new_label = np.zeros(output_shape, np.uint8)
    for value in values:  # each label by its own partial-volume fraction, so boundaries follow the blur
        fraction = _resample((label == value).astype(np.float32), to_input, output_shape, input_zooms, output_zooms)
        new_label[fraction >= 0.5] = value
    variant = nib.Nifti1Image(_contrast(rng, warped, options), output_affine)
    variant.set_qform(output_affine, code=1)
    variant.set_sform(output_affine, code=1)
    return variant, new_label


def augment_dataset(source: Path, output: Path, *, label_suffix: str, count: int, seed: int,
                    suffix=bids.DEFAULT_SUFFIX, options: AugmentOptions = AugmentOptions(), overwrite: bool = False,
                    progress: bool = False) -> list:
    """Write `count` variants of every image of a BIDS dataset that `suffix` selects (see `bids.ImageSuffix`) and
    that has a `label_suffix` label, as sessions `ses-aug01`... of its subject (labels under derivatives/labels);
    the original is copied as `ses-aug00`.
    Returns the images written. Variant k of an image is the same for the same seed. Existing variants are
    refused (OutputError) before anything is written, unless `overwrite`."""
    from tqdm import tqdm

    images, _ = bids.discover(Path(source), suffix)
    pairs = []
    for image in images:
        label = Path(source) / "derivatives" / "labels" / image.relative_folder / f"{image.stem}{label_suffix}.nii.gz"
        if label.is_file():
            pairs.append((image, label))
    if not pairs:
        raise InputImageError(f"{source} has no {suffix} image with a {label_suffix} label in derivatives/labels.")
    jobs = [(index, image, label, k) for index, (image, label) in enumerate(pairs) for k in range(count + 1)]
    existing = [target for *_, target in (bids.variant_paths(Path(output), image, k) for _, image, _, k in jobs)
                if target.exists()]
    if existing and not overwrite:
        raise OutputError(f"{existing[0]} already exists; use -overwrite to replace the variants.")
    written = []
    for index, image, label_path, k in tqdm(jobs, disable=not progress, unit="variant"):
        anat, labels, stem, _ = bids.variant_paths(Path(output), image, k)
        anat.mkdir(parents=True, exist_ok=True)
        labels.mkdir(parents=True, exist_ok=True)
        loaded = load_input_image(image.path)
        label = load_label_image(label_path, "label").data
        if k == 0:
            variant, new_label = loaded.nifti, label.astype(np.uint8)
        else:
            rng = np.random.default_rng([seed, index, k])
            variant, new_label = augment_case(rng, loaded.nifti, label, options)
        nib.save(variant, anat / f"{stem}.nii.gz")
        label_image = nib.Nifti1Image(new_label, variant.affine)
        label_image.set_qform(variant.affine, code=1)
        label_image.set_sform(variant.affine, code=1)
        nib.save(label_image, labels / f"{stem}{label_suffix}.nii.gz")
        written.append(anat / f"{stem}.nii.gz")
    return written
