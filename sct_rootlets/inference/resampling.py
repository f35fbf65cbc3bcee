"""nnU-Net's default resampling (`resample_data_or_seg_to_shape` for images and logits) without importing torch,
and a part of its result computed alone.

nnU-Net resamples each channel with `skimage.transform.resize(channel, shape, order, mode="edge",
anti_aliasing=False)` in float64 (or slice by slice, then along the low-resolution axis, when the spacing is
anisotropic), into an array of the input's dtype. Its module imports torch (over a second of start-up), so the same
steps are taken here: `resample_to_shape` gives the same arrays, bit for bit (tests compare it with nnU-Net's).

skimage's resize is scipy's `zoom` (a B-spline of the order, on the voxel grid's centres) clipped to the input's
range. `resize_box` computes only a box of that result: scipy's zoom kernel is run with the box's first output
voxel as shift, so every output voxel is computed from the same input coefficients with the same weights as in
the whole result. The kernel is scipy's private one; the first use in a process compares it with scipy's public
zoom called as skimage calls it, on a small array, and any difference (another scipy) makes `resize_box` crop
skimage's whole resize instead.
"""

import functools
import logging
from typing import Optional, Sequence

import numpy as np

logger = logging.getLogger(__name__)

#: nnU-Net's `ANISO_THRESHOLD` (nnunetv2.configuration): spacings more anisotropic than this are resampled
#: slice by slice.
ANISOTROPY_THRESHOLD = 3
#: How scipy's `zoom` pads an image before its spline filter in mode "nearest" (`_prepad_for_spline_filter`).
_SPLINE_PADDING = 12


def compute_new_shape(old_shape, old_spacing, new_spacing) -> np.ndarray:
    """nnU-Net's `compute_new_shape`: the shape after resampling from `old_spacing` to `new_spacing`."""
    return np.array([int(round(i / j * k)) for i, j, k in zip(old_spacing, new_spacing, old_shape)])


def _skimage_resize(image: np.ndarray, shape, order: int) -> np.ndarray:
    from skimage.transform import resize

    return resize(image, shape, order, mode="edge", anti_aliasing=False)


def _in_threads(function, parts: list, threads: int) -> None:
    """function(part) for every part, in up to `threads` threads (scipy's kernels release the interpreter)."""
    if threads <= 1 or len(parts) <= 1:
        for part in parts:
            function(part)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(function, parts))


def _chunks(size: int, count: int) -> list:
    bounds = np.linspace(0, size, max(min(count, size), 1) + 1).astype(int)
    return [(int(start), int(stop)) for start, stop in zip(bounds[:-1], bounds[1:]) if stop > start]


def _zoom_box(image: np.ndarray, shape, order: int, box: tuple, threads: int = 1) -> np.ndarray:
    """`_skimage_resize(image, shape, order)[box]` from scipy's zoom kernel, computing only the box; the spline
    filter's lines and the box's output slabs are shared out among `threads` threads (each line and each output
    voxel computed as scipy computes it alone)."""
    from scipy import ndimage
    from scipy.ndimage import _nd_image, _ni_support

    zoom_factors = [1 / f for f in np.divide(image.shape, shape)]  # as skimage's resize asks scipy's zoom
    if tuple(int(round(i * z)) for i, z in zip(image.shape, zoom_factors)) != tuple(shape):
        raise ValueError("scipy's zoom would give another shape")
    if order > 1:  # scipy's zoom in mode "nearest": edge padding, then the spline filter along each axis
        padding = _SPLINE_PADDING
        filtered = np.pad(image, padding, mode="edge").astype(np.float64)
        for axis in range(filtered.ndim):
            across = (axis + 1) % filtered.ndim  # the lines along `axis` are shared out across another axis

            def filter_lines(chunk, axis=axis, across=across):
                where = [slice(None)] * filtered.ndim
                where[across] = slice(*chunk)
                lines = filtered[tuple(where)]
                ndimage.spline_filter1d(lines, order, axis, output=lines, mode="nearest")

            _in_threads(filter_lines, _chunks(filtered.shape[across], threads), threads)
    else:
        padding, filtered = 0, np.asarray(image, dtype=np.float64)
    zoom = np.divide(np.array(image.shape), np.array(shape))  # scipy's grid mode
    output = np.zeros(tuple(part.stop - part.start for part in box), np.float64)
    mode = _ni_support._extend_mode_to_code("nearest")

    def zoom_slab(chunk):
        start, stop = chunk
        shift = np.array([float(box[0].start + start), *(float(part.start) for part in box[1:])])
        _nd_image.zoom_shift(filtered, zoom, shift, output[start:stop], order, mode, 0.0, padding, True)

    _in_threads(zoom_slab, _chunks(output.shape[0], threads), threads)
    # skimage clips to the input's range (higher orders overshoot)
    np.clip(output, np.min(image), np.max(image), out=output)
    return output


def _scipy_resize(image: np.ndarray, shape, order: int) -> np.ndarray:
    """skimage's resize (mode "edge", no anti-aliasing) as it calls scipy: a zoom on the grid of voxel centres in
    mode "nearest", clipped to the input's range (skimage itself is not imported: its import takes a while)."""
    from scipy import ndimage

    image = np.asarray(image, dtype=np.float64)
    zoomed = ndimage.zoom(image, np.divide(shape, image.shape), order=order, mode="nearest", grid_mode=True)
    return np.clip(zoomed, image.min(), image.max())


@functools.lru_cache(maxsize=None)
def _zoom_box_matches_scipy() -> bool:
    """Whether `_zoom_box` gives scipy's public zoom here (checked once, on a small random image)."""
    generator = np.random.default_rng(0)
    image = generator.normal(size=(9, 13, 7)) * 100
    try:
        for order, shape, box in ((1, (14, 8, 11), (slice(3, 12), slice(0, 8), slice(2, 5))),
                                  (3, (6, 20, 5), (slice(1, 6), slice(7, 19), slice(0, 5)))):
            expected = _scipy_resize(image, shape, order)[box]
            for threads in (1, 3):
                if not np.array_equal(_zoom_box(image, shape, order, box, threads), expected):
                    raise ValueError("the results differ")
    except Exception as exc:  # another scipy: its private kernel may differ
        logger.debug("Resampling a box with scipy's zoom kernel is not used (%s)", exc)
        return False
    return True


def resize_box(image: np.ndarray, shape, order: int, box: Optional[tuple] = None, threads: int = 1) -> np.ndarray:
    """`skimage.transform.resize(image, shape, order, mode="edge", anti_aliasing=False)[box]` (float64), computing
    only the box (a tuple of slices with starts and stops) where scipy allows, in up to `threads` threads; `box`
    None: the whole result."""
    box = tuple(slice(0, size) for size in shape) if box is None else box
    if any(part.stop <= part.start for part in box):
        return np.zeros(tuple(max(part.stop - part.start, 0) for part in box), np.float64)
    if not np.isnan(np.min(image)) and _zoom_box_matches_scipy():
        try:
            return _zoom_box(image, shape, order, box, threads)
        except ValueError:  # a shape scipy's zoom would round otherwise: skimage's own path
            pass
    return _skimage_resize(np.asarray(image, dtype=np.float64), shape, order)[box]


def _separate_z(force_separate_z, current_spacing, new_spacing, threshold) -> tuple:
    """nnU-Net's `determine_do_sep_z_and_axis`: (resample slice by slice?, the low-resolution axis or None)."""
    def anisotropic(spacing):
        return (np.max(spacing) / np.min(spacing)) > threshold

    def lowres_axis(spacing):
        return np.where(max(spacing) / np.array(spacing) == 1)[0]

    if force_separate_z is not None:
        separate, axis = force_separate_z, (lowres_axis(current_spacing) if force_separate_z else None)
    elif anisotropic(current_spacing):
        separate, axis = True, lowres_axis(current_spacing)
    elif anisotropic(new_spacing):
        separate, axis = True, lowres_axis(new_spacing)
    else:
        separate, axis = False, None
    if axis is not None:
        if len(axis) in (2, 3):
            separate, axis = False, None
        else:
            axis = axis[0]
    return separate, axis


def resample_to_shape(data: np.ndarray, new_shape: Sequence[int], current_spacing, new_spacing, *,
                      order: int = 3, order_z: int = 0, force_separate_z: Optional[bool] = False,
                      separate_z_anisotropy_threshold: float = ANISOTROPY_THRESHOLD,
                      box: Optional[tuple] = None, threads: int = 1) -> np.ndarray:
    """nnU-Net's `resample_data_or_seg_to_shape(data, new_shape, current_spacing, new_spacing, is_seg=False, ...)`
    for images and logits (c, z, y, x), restricted to `box` (slices over the new shape; None: all of it).
    Same dtype as `data` (the input itself, box aside, when no axis changes size, as nnU-Net returns it).
    `threads` share the work of large resamplings; the result does not depend on them."""
    new_shape = np.array(new_shape)
    box = tuple(slice(0, int(size)) for size in new_shape) if box is None else box
    if np.all(np.array(data.shape[1:]) == new_shape):
        return data[(slice(None), *box)]
    separate, axis = _separate_z(force_separate_z, current_spacing, new_spacing, separate_z_anisotropy_threshold)
    result = np.zeros((data.shape[0], *(part.stop - part.start for part in box)), dtype=data.dtype)
    for channel in range(data.shape[0]):
        if separate:
            result[channel] = _resample_separate_z(data[channel].astype(float), new_shape, axis, order,
                                                   order_z)[box]
        else:
            result[channel] = resize_box(data[channel], tuple(int(s) for s in new_shape), order, box, threads)
    return result


def _resample_separate_z(channel: np.ndarray, new_shape: np.ndarray, axis: int, order: int, order_z: int):
    """nnU-Net's slice-by-slice resampling of one channel (not a segmentation) along `axis`."""
    from scipy.ndimage import map_coordinates

    shape = np.array(channel.shape)
    in_plane = np.delete(new_shape, axis)
    stacked = np.array(new_shape)
    stacked[axis] = shape[axis]
    resampled = np.zeros(stacked)
    for index in range(shape[axis]):
        where = [slice(None)] * 3
        where[axis] = index
        resampled[tuple(where)] = _skimage_resize(channel[tuple(where)], in_plane, order)
    if shape[axis] == new_shape[axis]:
        return resampled
    rows, cols, dims = new_shape
    scales = [float(old) / new for old, new in zip(resampled.shape, (rows, cols, dims))]
    grid = np.mgrid[:rows, :cols, :dims]
    coordinates = np.array([scale * (grid[i] + 0.5) - 0.5 for i, scale in enumerate(scales)])
    return map_coordinates(resampled, coordinates, order=order_z, mode="nearest")
