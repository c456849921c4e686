"""Preprocessing against acquisition differences between hospitals.

Each source has its own signature: black or white borders, burned-in letters and markers, a
contrast curve, an aspect ratio. A model can learn those instead of the lungs. Every function
here takes and returns a 2-D uint8 array and is tested on its own; `preprocess` chains the ones a
`PreprocessConfig` switches on, in a fixed order, before the final resize.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage import exposure, filters, measure

from ..config import PreprocessConfig


def trim_borders(pixels: np.ndarray, max_std: float = 4.0, max_fraction: float = 0.25) -> np.ndarray:
    """Cut rows and columns at the edges that are (nearly) constant: padding bands, black or white frames.

    Rows and columns are cut in turns until none is left to cut (a white band above a black frame takes two
    turns). At most `max_fraction` of the height or width is cut from each side, so a dark image is never emptied."""
    height, width = pixels.shape
    limit_y, limit_x = int(height * max_fraction), int(width * max_fraction)
    top = bottom = left = right = 0
    while True:
        window = pixels[top : height - bottom, left : width - right].astype(np.float32)
        flat_rows = window.std(axis=1) <= max_std
        flat_cols = window.std(axis=0) <= max_std
        cuts = (
            _run(flat_rows, limit_y - top),
            _run(flat_rows[::-1], limit_y - bottom),
            _run(flat_cols, limit_x - left),
            _run(flat_cols[::-1], limit_x - right),
        )
        if not any(cuts):
            return pixels[top : height - bottom, left : width - right]
        top, bottom, left, right = top + cuts[0], bottom + cuts[1], left + cuts[2], right + cuts[3]


def _run(flags: np.ndarray, limit: int) -> int:
    """Length of the run of True at the start of `flags`, at most `limit`."""
    count = 0
    while count < limit and flags[count]:
        count += 1
    return count


def crop_top(pixels: np.ndarray, fraction: float) -> np.ndarray:
    """Drop the top `fraction` of rows, where many sources burn in text (COVID-Net crops 8%)."""
    return pixels[int(round(pixels.shape[0] * fraction)) :]


def remove_burned_in_marks(pixels: np.ndarray, min_brightness: int = 235, max_area: float = 0.03) -> np.ndarray:
    """Replace small, near-white blobs (letters, arrows, 'L'/'R' markers) by the local background.

    A blob counts when it is brighter than `min_brightness` and covers less than `max_area` of the image;
    large bright regions (bone, shoulders, a white frame) are left alone. Its pixels take the value of a grey
    closing of the image with the marks blanked out: small dark holes are filled from the surrounding tissue."""
    bright = pixels >= min_brightness
    if not bright.any():
        return pixels
    labels, count = ndimage.label(ndimage.binary_dilation(bright, iterations=1))
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, count + 1))
    small = np.isin(labels, 1 + np.flatnonzero(sizes < max_area * pixels.size))
    if not small.any():
        return pixels
    mask = ndimage.binary_dilation(small, iterations=2)
    width = max(9, min(pixels.shape) // 16)
    background = ndimage.grey_closing(np.where(mask, 0, pixels).astype(np.uint8), size=(width, width))
    return np.where(mask, background, pixels).astype(np.uint8)


def equalize(pixels: np.ndarray, method: str) -> np.ndarray:
    """Normalise intensity per image: 'clahe' (adaptive equalisation), 'hist' (global), 'percentile'
    (stretch the 1st..99th percentiles to 0..255) or 'none'."""
    if method == "none":
        return pixels
    if method == "percentile":
        low, high = np.percentile(pixels, [1, 99])
        scaled = (pixels.astype(np.float32) - low) / max(float(high - low), 1.0)
        return (np.clip(scaled, 0, 1) * 255).round().astype(np.uint8)
    if method == "hist":
        return (exposure.equalize_hist(pixels) * 255).round().astype(np.uint8)
    if method == "clahe":
        return (exposure.equalize_adapthist(pixels, clip_limit=0.01) * 255).round().astype(np.uint8)
    raise ValueError(f"unknown equalization {method!r}")


def lung_box(pixels: np.ndarray, margin: float = 0.08) -> tuple[int, int, int, int] | None:
    """Bounding box (top, bottom, left, right) of the two lung fields, or None when they cannot be found.

    Runs offline with no trained model: lungs are the large dark regions inside the body. Otsu's threshold
    separates dark from bright; dark regions touching the image edge are air outside the body; the two
    largest remaining ones (each at least 2% of the image) are the lungs."""
    height, width = pixels.shape
    smooth = ndimage.gaussian_filter(pixels.astype(np.float32), sigma=max(1.0, min(height, width) / 128))
    dark = smooth < filters.threshold_otsu(smooth)
    dark = ndimage.binary_opening(dark, iterations=2)
    regions = [
        r
        for r in measure.regionprops(measure.label(dark))
        if r.area >= 0.02 * pixels.size and not _touches_edge(r.bbox, height, width)
    ]
    if not regions:
        return None
    lungs = sorted(regions, key=lambda r: r.area, reverse=True)[:2]
    top = min(r.bbox[0] for r in lungs)
    left = min(r.bbox[1] for r in lungs)
    bottom = max(r.bbox[2] for r in lungs)
    right = max(r.bbox[3] for r in lungs)
    if (bottom - top) < 0.3 * height or (right - left) < 0.3 * width:
        return None  # one small dark patch is not a pair of lungs
    pad_y, pad_x = int(margin * height), int(margin * width)
    return max(0, top - pad_y), min(height, bottom + pad_y), max(0, left - pad_x), min(width, right + pad_x)


def _touches_edge(bbox: tuple[int, int, int, int], height: int, width: int) -> bool:
    top, left, bottom, right = bbox
    return top == 0 or left == 0 or bottom == height or right == width


def crop_lungs(pixels: np.ndarray) -> np.ndarray:
    """The lung-field box of `pixels`, or `pixels` unchanged when no lungs are found."""
    box = lung_box(pixels)
    if box is None:
        return pixels
    top, bottom, left, right = box
    return pixels[top:bottom, left:right]


def pad_to_square(pixels: np.ndarray) -> np.ndarray:
    """Centre the image on a black square canvas: resizing it then keeps the anatomy's aspect ratio."""
    height, width = pixels.shape
    side = max(height, width)
    canvas = np.zeros((side, side), np.uint8)
    top, left = (side - height) // 2, (side - width) // 2
    canvas[top : top + height, left : left + width] = pixels
    return canvas


def resize(pixels: np.ndarray, size: int, aspect: str) -> np.ndarray:
    """Square `size`×`size` output: 'stretch' resizes directly, 'pad' pads to a square first."""
    if aspect == "pad":
        pixels = pad_to_square(pixels)
    image = Image.fromarray(pixels, mode="L").resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def preprocess(pixels: np.ndarray, size: int, config: PreprocessConfig) -> np.ndarray:
    """Apply the steps `config` switches on, in order: trim borders, crop the top band, remove marks,
    crop to the lungs, equalize, resize."""
    if config.trim_borders:
        pixels = trim_borders(pixels)
    if config.crop_top:
        pixels = crop_top(pixels, config.crop_top)
    if config.remove_marks:
        pixels = remove_burned_in_marks(pixels)
    if config.lung_crop:
        pixels = crop_lungs(pixels)
    pixels = equalize(pixels, config.equalize)
    return resize(pixels, size, config.aspect)
