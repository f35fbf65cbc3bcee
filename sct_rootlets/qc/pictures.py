"""QC pictures: an axial mosaic of every slice with rootlets, and a sagittal overview with level bars.

Pictures are built as pixel arrays (no plotting library): labels are never resampled, each voxel becomes an
integer block of pixels whose size follows the voxel size (correct aspect on anisotropic voxels), so a
1-voxel rootlet stays visible. Background (CLAHE-equalised greyscale) and overlay (RGBA, transparent where
there is no label) always have the same pixel size. Display convention, as SCT's: axial tiles have anterior at
the top and the patient's right on the left; the sagittal view has superior at the top and anterior on the left.
"""

from typing import Optional

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage
from skimage import exposure

from sct_rootlets.io.image import Reorientation
from sct_rootlets.anatomy.level_names import spinal_level_name

#: SCT's rootlets colours, cycled from C2 (C2 white, C3 orange, ...), so a level has one colour in every subject.
LEVEL_COLOURS = ["#FFFFFF", "#F28C28", "#0096FF", "#FFEE00", "#FF0000", "#50FF30", "#F749FD"]
TILE_HALF_WIDTH_MM = 15.0
SLICE_MARGIN = 2
PIXELS_PER_SMALLEST_VOXEL = 4
MAX_MOSAIC_WIDTH_PX = 1600
BAR_PANEL_WIDTH_PX = 170


def level_colour(level: int) -> tuple:
    hex_colour = LEVEL_COLOURS[(int(level) - 2) % len(LEVEL_COLOURS)]
    return tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType sizes
        return ImageFont.load_default()


def _to_ras(array: np.ndarray, affine: np.ndarray) -> np.ndarray:
    return Reorientation.between(affine, ("R", "A", "S")).apply(array)


def _ras_zooms(affine: np.ndarray, zooms) -> tuple:
    return Reorientation.between(affine, ("R", "A", "S")).apply_to_zooms(zooms)


def _normalise(data: np.ndarray) -> np.ndarray:
    low, high = np.percentile(data, (0.5, 99.5))
    return np.clip((data - low) / max(high - low, 1e-6), 0, 1)


def _clahe(grey01: np.ndarray) -> np.ndarray:
    """Gentle contrast-limited equalisation: contextual regions of half the picture, low clip limit."""
    kernel = max(8, max(grey01.shape) // 2)
    return exposure.equalize_adapthist(grey01, kernel_size=kernel, clip_limit=0.01)


def _upscale(array: np.ndarray, factors) -> np.ndarray:
    for axis, factor in enumerate(factors):
        array = np.repeat(array, factor, axis=axis)
    return array


def _pixel_factors(zooms_2d) -> tuple:
    smallest = min(zooms_2d)
    return tuple(max(1, int(round(PIXELS_PER_SMALLEST_VOXEL * z / smallest))) for z in zooms_2d)


def _outline(labels_px: np.ndarray) -> np.ndarray:
    """Pixels just outside labelled regions (1 px): thin dark outlines that never cover a label."""
    labelled = labels_px > 0
    return ndimage.binary_dilation(labelled) & ~labelled


def _paint_overlay(labels_px: np.ndarray) -> np.ndarray:
    rgba = np.zeros((*labels_px.shape, 4), np.uint8)
    for level in np.unique(labels_px[labels_px > 0]):
        rgba[labels_px == level] = (*level_colour(level), 255)
    rgba[_outline(labels_px)] = (0, 0, 0, 255)
    return rgba


def _tile_centres(rootlets: np.ndarray, cord: Optional[np.ndarray], slices) -> dict:
    """(x, y) voxel centre of each axial slice: the cord's centroid, else the rootlets', else interpolated."""
    centres = {}
    for z in slices:
        for mask in (cord, rootlets):
            if mask is not None and z < mask.shape[2] and mask[:, :, z].any():
                centres[z] = np.argwhere(mask[:, :, z]).mean(axis=0)
                break
    known = sorted(centres)
    if not known:
        middle = np.array(rootlets.shape[:2]) / 2
        return {z: middle for z in slices}
    return {z: centres.get(z, np.array([np.interp(z, known, [centres[k][i] for k in known]) for i in (0, 1)]))
            for z in slices}


def _crop(plane: np.ndarray, centre, half: tuple) -> np.ndarray:
    """plane[cx-hx : cx+hx+1, cy-hy : cy+hy+1], zero-padded beyond the image."""
    cx, cy = (int(round(c)) for c in centre)
    padded = np.pad(plane, ((half[0], half[0]), (half[1], half[1])))
    return padded[cx:cx + 2 * half[0] + 1, cy:cy + 2 * half[1] + 1]


def _axial_display(tile: np.ndarray) -> np.ndarray:
    """RAS (x, y) tile -> rows anterior..posterior, columns patient right..left."""
    return tile[::-1, ::-1].T


def _grey_rgb(grey01: np.ndarray) -> np.ndarray:
    return np.repeat((grey01 * 255).astype(np.uint8)[..., None], 3, axis=2)


def axial_mosaic(image: np.ndarray, rootlets: np.ndarray, affine: np.ndarray, zooms,
                 cord: Optional[np.ndarray] = None) -> tuple:
    """(background RGB, overlay RGBA) of every axial slice holding rootlets (plus a margin), superior first."""
    data, labels = _to_ras(image, affine), _to_ras(rootlets, affine).astype(int)
    cord_ras = None if cord is None else _to_ras(cord, affine) > 0
    zx, zy, _ = _ras_zooms(affine, zooms)
    with_rootlets = np.flatnonzero(labels.any(axis=(0, 1)))
    if with_rootlets.size == 0:
        with_rootlets = np.array([labels.shape[2] // 2])
    slices = range(min(labels.shape[2] - 1, with_rootlets.max() + SLICE_MARGIN),
                   max(0, with_rootlets.min() - SLICE_MARGIN) - 1, -1)
    centres = _tile_centres(labels > 0, cord_ras, list(slices))
    half = (int(np.ceil(TILE_HALF_WIDTH_MM / zx)), int(np.ceil(TILE_HALF_WIDTH_MM / zy)))
    factors = _pixel_factors((zy, zx))  # display rows follow y, columns follow x
    normalised = _normalise(data)
    grey_tiles, label_tiles = [], []
    for z in slices:
        grey = _axial_display(_crop(normalised[:, :, z], centres[z], half))
        grey_tiles.append(_upscale(_clahe(grey), factors))
        label_tiles.append(_upscale(_axial_display(_crop(labels[:, :, z], centres[z], half)), factors))
    background, overlay = _grid(grey_tiles, label_tiles, list(slices))
    return background, overlay


def _grid(grey_tiles: list, label_tiles: list, slice_numbers: list) -> tuple:
    tile_h, tile_w = grey_tiles[0].shape
    columns = max(1, min(len(grey_tiles), MAX_MOSAIC_WIDTH_PX // tile_w))
    rows = int(np.ceil(len(grey_tiles) / columns))
    grey = np.zeros((rows * tile_h, columns * tile_w))
    labels = np.zeros((rows * tile_h, columns * tile_w), int)
    for index, (g, lab) in enumerate(zip(grey_tiles, label_tiles)):
        r, c = divmod(index, columns)
        grey[r * tile_h:(r + 1) * tile_h, c * tile_w:(c + 1) * tile_w] = g
        labels[r * tile_h:(r + 1) * tile_h, c * tile_w:(c + 1) * tile_w] = lab
    background = Image.fromarray(_grey_rgb(grey))
    overlay = Image.fromarray(_paint_overlay(labels), "RGBA")
    font = _font(max(10, tile_h // 9))
    draw_bg, draw_ov = ImageDraw.Draw(background), ImageDraw.Draw(overlay)
    for index, (lab, number) in enumerate(zip(label_tiles, slice_numbers)):
        r, c = divmod(index, columns)
        x0, y0 = c * tile_w, r * tile_h
        draw_bg.text((x0 + 3, y0 + tile_h - font.size - 4), f"z{number}", fill=(160, 160, 160), font=font)
        levels = [int(v) for v in np.unique(lab[lab > 0])]
        for k, level in enumerate(levels):
            draw_ov.text((x0 + 3, y0 + 2 + k * (font.size + 2)), spinal_level_name(level),
                         fill=(*level_colour(level), 255), font=font, stroke_width=1, stroke_fill=(0, 0, 0, 255))
    _orientation_letters(draw_bg, tile_w, tile_h, font, ("A", "P", "R", "L"))
    return np.asarray(background), np.asarray(overlay)


def _orientation_letters(draw: ImageDraw.ImageDraw, width: int, height: int, font, letters) -> None:
    """Letters at the top, bottom, left and right of the first tile."""
    top, bottom, left, right = letters
    colour = (255, 215, 0)
    draw.text((width // 2 - 4, 2), top, fill=colour, font=font)
    draw.text((width // 2 - 4, height - font.size - 4), bottom, fill=colour, font=font)
    draw.text((2, height // 2 - font.size // 2), left, fill=colour, font=font)
    draw.text((width - font.size, height // 2 - font.size // 2), right, fill=colour, font=font)


def _sagittal_display(plane: np.ndarray) -> np.ndarray:
    """RAS (y, z) plane -> rows superior..inferior, columns anterior..posterior."""
    return plane[::-1, ::-1].T


def sagittal_overview(image: np.ndarray, rootlets: np.ndarray, affine: np.ndarray, zooms,
                      cord: Optional[np.ndarray] = None, levels: Optional[pd.DataFrame] = None) -> tuple:
    """(background RGB, overlay RGBA): the mid-sagittal slice with all rootlets projected left-right onto it,
    and, with a levels table, one bar per spinal level (with its PMJ distances) in a panel on the right."""
    data, labels = _to_ras(image, affine), _to_ras(rootlets, affine).astype(int)
    _, zy, zz = _ras_zooms(affine, zooms)
    reference = (_to_ras(cord, affine) > 0) if cord is not None and np.any(cord) else labels > 0
    x = int(np.median(np.argwhere(reference)[:, 0])) if reference.any() else data.shape[0] // 2
    factors = _pixel_factors((zz, zy))
    grey = _upscale(_clahe(_sagittal_display(_normalise(data)[x])), factors)
    projected = _upscale(_sagittal_display(labels.max(axis=0)), factors)
    panel = BAR_PANEL_WIDTH_PX if levels is not None and len(levels) else 0
    background = Image.fromarray(_grey_rgb(np.pad(grey, ((0, 0), (0, panel)))))
    overlay = Image.fromarray(_paint_overlay(np.pad(projected, ((0, 0), (0, panel)))), "RGBA")
    font = _font(12)
    if panel:
        _draw_level_bars(ImageDraw.Draw(overlay), levels, grey.shape[1], labels.shape[2], factors[0], font)
    _orientation_letters(ImageDraw.Draw(background), grey.shape[1], grey.shape[0], font, ("S", "I", "A", "P"))
    return np.asarray(background), np.asarray(overlay)


def _draw_level_bars(draw: ImageDraw.ImageDraw, levels: pd.DataFrame, x0: int, n_slices: int, px_per_slice: int,
                     font) -> None:
    """One coloured bar per level from its rostral to its caudal slice, labelled with PMJ distances (mm)."""
    for index, row in enumerate(levels.itertuples()):
        top = (n_slices - 1 - row.slice_start) * px_per_slice
        bottom = (n_slices - row.slice_end) * px_per_slice - 1
        left = x0 + 6 + (index % 2) * 12  # alternate columns so touching levels stay distinct
        colour = (*level_colour(row.spinal_level), 255)
        draw.rectangle((left, top, left + 8, bottom), fill=colour, outline=(0, 0, 0, 255))
        text = spinal_level_name(row.spinal_level)
        if not pd.isna(row.distance_from_pmj_start):
            text += f" {row.distance_from_pmj_start:.0f}-{row.distance_from_pmj_end:.0f} mm"
        draw.text((x0 + 34, (top + bottom) // 2 - 6), text, fill=colour, font=font, stroke_width=1,
                  stroke_fill=(0, 0, 0, 255))


def save_png(array: np.ndarray, path) -> None:
    Image.fromarray(array, "RGBA" if array.shape[-1] == 4 else "RGB").save(path)
