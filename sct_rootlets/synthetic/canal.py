"""The CSF around the cord of a real T2w scan, and that scan with its own rootlets taken out of the CSF.

A real scan's rootlets are faint dark strands in the bright CSF that nobody labelled; a network trained on the
scan with generated rootlets drawn in would learn to ignore them. A grey closing fills dark structures thinner
than its 3-voxel window and keeps larger ones (cord, canal walls), and fresh noise of the scan's own level then
replaces the noise the closing smoothed away.
"""

import numpy as np
from scipy import ndimage

#: How far from the cord CSF is looked for (the canal's radius and then some).
CANAL_REACH_MM = 12.0
#: Threshold between the cord's and the CSF's intensity (0: cord, 1: CSF), computed per slab along the cord.
CSF_THRESHOLD = 0.4
SLAB_MM = 16.0
#: White noise keeps this share of its standard deviation after subtracting a 1-voxel Gaussian blur of itself.
NOISE_RESIDUAL_SHARE = 0.8


def csf_mask(data: np.ndarray, cord: np.ndarray, zooms) -> np.ndarray:
    """Voxels brighter than the cord outside it and within CANAL_REACH_MM, connected to it (T2w contrast).
    `data` on a RAS grid (axis 2 inferior-superior); the threshold is set per slab, as coils shade the scan."""
    distance = ndimage.distance_transform_edt(~cord, sampling=zooms)
    ring = (distance > 0) & (distance <= CANAL_REACH_MM)
    bright = np.zeros(data.shape, bool)
    slab = max(1, int(round(SLAB_MM / zooms[2])))
    for start in range(0, data.shape[2], slab):
        part = slice(start, start + slab)
        cord_part, ring_part = cord[:, :, part], ring[:, :, part]
        if cord_part.sum() < 10:
            continue
        values = data[:, :, part]
        cord_level = np.median(values[cord_part])
        csf_level = np.percentile(values[ring_part & (distance[:, :, part] <= 4.0)], 90)
        if csf_level <= cord_level:
            continue
        bright[:, :, part] = ring_part & (values > cord_level + CSF_THRESHOLD * (csf_level - cord_level))
    pieces, _ = ndimage.label(bright)
    touching = np.unique(pieces[ndimage.binary_dilation(cord, iterations=2) & bright])
    return np.isin(pieces, touching[touching > 0])


def without_own_rootlets(rng, data: np.ndarray, csf: np.ndarray) -> np.ndarray:
    """`data` with thin dark strands in and next to the CSF filled in, and noise of the scan's level put back."""
    region = ndimage.binary_dilation(csf)
    closed = ndimage.grey_closing(data, size=(3, 3, 3))
    tissue = data > np.percentile(data, 25)  # the noise of the tissue, not the CSF's flow and rootlets
    residual = (data - ndimage.gaussian_filter(data, 1.0))[tissue]
    sigma = 1.4826 * float(np.median(np.abs(residual))) / NOISE_RESIDUAL_SHARE if tissue.any() else 0.0
    smooth = ndimage.gaussian_filter(closed, 0.7)
    cleaned = data.astype(np.float32, copy=True)
    cleaned[region] = smooth[region] + rng.normal(0, sigma, int(region.sum()))
    return cleaned
