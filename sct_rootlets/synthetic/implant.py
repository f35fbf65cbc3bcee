"""Generated rootlets drawn into real scans, written as training cases.

Per case: the scan (as RAS) loses its own rootlets (canal.without_own_rootlets); in each quarter of the CSF
(left/right of the cord x dorsal/ventral) and each level's band (bands.level_bands, placed by the scan's C2 and
T2 centres and shifted a little at random), bundles of thin strands run from the cord's surface caudally and
outwards (synth.draw_rootlets), darkening the voxels they cover in proportion. C2-T1 strands are labelled with
their level; C1, T2 and T3 strands are drawn but left unlabelled, because they exist in real scans and are not
part of the label set: a network must learn where the set starts and ends.
"""

from dataclasses import dataclass, replace
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from sct_rootlets.io import bids
from sct_rootlets.errors import InputImageError, OutputError
from sct_rootlets.io.image import load_input_image, load_label_image
from sct_rootlets.synthetic.bands import landmark_superior, level_bands
from sct_rootlets.synthetic.canal import CANAL_REACH_MM, csf_mask, without_own_rootlets
from sct_rootlets.synthetic.render import SynthOptions, draw_rootlets, load_template

ROOTLETS_SUFFIX = "_label-rootlets_dseg"


@dataclass(frozen=True)
class ImplantOptions:
    strands: SynthOptions = SynthOptions()
    band_shift: float = 0.03                  # random shift of all bands, fraction of the C2 -> T2 distance
    unlabelled_probability: float = 0.7       # chance that C1 (resp. T2, T3) rootlets are drawn in a quarter
    rootlet_contrast: tuple = (0.35, 0.9)     # rootlet intensity, relative to the cord's median
    min_lateral_mm: float = 1.0               # zones keep off the mid-sagittal plane


def _cord_centres(cord: np.ndarray) -> tuple:
    """Per axial slice (RAS axis 2): the cord's centre in voxels (x, y); NaN where the slice has no cord."""
    area = cord.sum(axis=(0, 1)).astype(float)
    area[area == 0] = np.nan
    x = (cord * np.arange(cord.shape[0])[:, None, None]).sum(axis=(0, 1)) / area
    y = (cord * np.arange(cord.shape[1])[None, :, None]).sum(axis=(0, 1)) / area
    return x, y


def _largest_piece(mask: np.ndarray) -> np.ndarray:
    pieces, count = ndimage.label(mask)
    if count <= 1:
        return mask
    return pieces == np.argmax(np.bincount(pieces.ravel())[1:]) + 1


def _canal_box(cord: np.ndarray, zooms) -> tuple:
    """Slices of the cord's bounding box grown by the canal's reach across the cord (whole length along it)."""
    index = np.argwhere(cord)
    reach = np.ceil((CANAL_REACH_MM + 4) / np.asarray(zooms)).astype(int)
    low, high = index.min(axis=0) - reach, index.max(axis=0) + reach + 1
    return tuple(slice(max(0, lo), min(n, hi)) if axis < 2 else slice(None)
                 for axis, (lo, hi, n) in enumerate(zip(low, high, cord.shape)))


def implant(rng, data: np.ndarray, cord: np.ndarray, affine: np.ndarray, c2_superior: float, t2_superior: float,
            bands: list, options: ImplantOptions = ImplantOptions()) -> tuple:
    """(image, rootlet labels) of one case; `data`/`cord` on a RAS grid with `affine`."""
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    box = _canal_box(cord, zooms)
    cord_box, data_box = cord[box], data[box].astype(np.float32)
    csf = csf_mask(data_box, cord_box, zooms)
    cleaned = without_own_rootlets(rng, data_box, csf)
    offset = np.array([s.start or 0 for s in box])
    index = np.indices(cord_box.shape, dtype=np.float32)
    superior = sum(affine[2, axis] * (index[axis] + offset[axis]) for axis in range(3)) + affine[2, 3]
    centre_x, centre_y = _cord_centres(cord_box)
    lateral_mm = np.abs(index[0] - centre_x[None, None, :]) * zooms[0]
    right = index[0] > centre_x[None, None, :]
    anterior = index[1] > centre_y[None, None, :]
    usable = csf & (lateral_mm >= options.min_lateral_mm)
    shift = rng.uniform(-1, 1) * options.band_shift
    strands = replace(options.strands, voxel_size=tuple(float(z) for z in zooms))
    labels = np.zeros(cord_box.shape, np.uint8)
    coverage = np.zeros(cord_box.shape, np.float32)
    for side in (right, ~right):
        for half in (anterior, ~anterior):
            zones = np.zeros(cord_box.shape, np.uint8)
            for band in bands:
                if not band.labelled and rng.random() > options.unlabelled_probability:
                    continue
                low, high = band.superior_range_mm(c2_superior, t2_superior, shift)
                zone = usable & side & half & (superior >= low) & (superior <= high)
                if zone.sum() >= 8:
                    zones[_largest_piece(zone)] = band.level
            quarter_labels, quarter_coverage = draw_rootlets(rng, zones, cord_box, strands, outward_mm=lateral_mm)
            coverage = np.minimum(coverage + quarter_coverage, 1.0)
            labels = np.where(quarter_labels > 0, quarter_labels, labels)
    labels[np.isin(labels, [b.level for b in bands if not b.labelled])] = 0
    rootlet = float(np.median(cleaned[cord_box])) * rng.uniform(*options.rootlet_contrast)
    image = data.astype(np.float32, copy=True)
    image[box] = cleaned * (1 - coverage) + rootlet * coverage
    full_labels = np.zeros(cord.shape, np.uint8)
    full_labels[box] = labels
    return image, full_labels


def _save(data: np.ndarray, affine: np.ndarray, path: Path) -> None:
    image = nib.Nifti1Image(data, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nib.save(image, path)


def implant_dataset(source: Path, output: Path, *, count: int, seed: int, cord_suffix: str = "_label-SC_seg",
                    landmarks_suffix: str = "_desc-vertcentre_dlabel", options: ImplantOptions = ImplantOptions(),
                    overwrite: bool = False, progress: bool = False) -> list:
    """`count` cases of every T2w image of a BIDS dataset that has a cord mask and C2 (2) and T2 (9) vertebral
    centres in derivatives/labels, as sessions `ses-implantNN` of its subject (RAS, float32 images, rootlets as
    `_label-rootlets_dseg`, cord mask copied). Returns the images written."""
    from tqdm import tqdm

    source, output = Path(source), Path(output)
    images, _ = bids.discover(source)
    jobs = []
    for image in images:
        labels = source / "derivatives" / "labels" / image.relative_folder
        cord, landmarks = (labels / f"{image.stem}{cord_suffix}.nii.gz",
                           labels / f"{image.stem}{landmarks_suffix}.nii.gz")
        if cord.is_file() and landmarks.is_file():
            jobs.extend((image, cord, landmarks, k) for k in range(1, count + 1))
    if not jobs:
        raise InputImageError(f"{source} has no T2w image with both a {cord_suffix} cord mask and "
                              f"{landmarks_suffix} landmarks in derivatives/labels.")
    targets = [bids.variant_paths(output, image, k, tag="implant") for image, *_, k in jobs]
    existing = [target for *_, target in targets if target.exists()]
    if existing and not overwrite:
        raise OutputError(f"{existing[0]} already exists; use -overwrite to replace the cases.")
    bands = level_bands(load_template())
    written = []
    for (image, cord_path, landmarks_path, k), (anat, label_folder, stem, target) in tqdm(
            list(zip(jobs, targets)), disable=not progress, unit="case"):
        scan = nib.as_closest_canonical(load_input_image(image.path).nifti)
        cord = np.asarray(nib.as_closest_canonical(load_label_image(cord_path, "cord mask").nifti).dataobj) > 0
        landmarks = load_label_image(landmarks_path, "landmarks")
        c2, t2 = (landmark_superior(landmarks.data, landmarks.nifti.affine, v) for v in (2, 9))
        if c2 is None or t2 is None or c2 <= t2:
            raise InputImageError(f"{landmarks_path} needs a C2 (2) centre above a T2 (9) centre.")
        rng = np.random.default_rng([seed, images.index(image), k])
        data, rootlets = implant(rng, np.asarray(scan.dataobj, np.float32), cord, scan.affine, c2, t2, bands,
                                 options)
        anat.mkdir(parents=True, exist_ok=True)
        label_folder.mkdir(parents=True, exist_ok=True)
        _save(data, scan.affine, target)
        _save(rootlets, scan.affine, label_folder / f"{stem}{ROOTLETS_SUFFIX}.nii.gz")
        _save(cord.astype(np.uint8), scan.affine, label_folder / f"{stem}{cord_suffix}.nii.gz")
        written.append(target)
    return written
