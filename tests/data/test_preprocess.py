import numpy as np
import pytest
from fixtures import xray_like

from covid_xray.config import PreprocessConfig
from covid_xray.data.preprocess import (
    crop_lungs,
    crop_top,
    equalize,
    lung_box,
    pad_to_square,
    preprocess,
    remove_burned_in_marks,
    resize,
    trim_borders,
)


def chest(size: int = 128) -> np.ndarray:
    """Bright body with two dark lung fields inside it, on a dark background."""
    y, x = np.mgrid[0:size, 0:size] / size
    body = ((x - 0.5) ** 2 / 0.2 + (y - 0.5) ** 2 / 0.22) < 1
    lungs = ((x - 0.3) ** 2 / 0.012 + (y - 0.5) ** 2 / 0.06 < 1) | ((x - 0.7) ** 2 / 0.012 + (y - 0.5) ** 2 / 0.06 < 1)
    image = np.where(body, 180, 20) - np.where(lungs, 120, 0) + np.random.default_rng(0).normal(0, 3, (size, size))
    return np.clip(image, 0, 255).astype(np.uint8)


def test_trim_borders_cuts_constant_frames_only():
    inner = np.asarray(xray_like(1, "covid", size=64))
    framed = np.pad(inner, ((10, 4), (6, 0)), constant_values=0)
    framed[:3] = 255  # a white band above the black one
    assert np.array_equal(trim_borders(framed), inner)
    assert np.array_equal(trim_borders(inner), inner)


def test_trim_borders_never_cuts_more_than_a_quarter_per_side():
    dark = np.zeros((100, 100), np.uint8)
    dark[40:60, 40:60] = np.random.default_rng(0).integers(0, 255, (20, 20))
    assert trim_borders(dark).shape == (50, 50)  # 25 rows and columns from each side, no more


def test_crop_top_drops_the_top_band():
    image = np.arange(100 * 10, dtype=np.uint8).reshape(100, 10)
    assert np.array_equal(crop_top(image, 0.08), image[8:])


def test_burned_in_text_block_is_removed_and_tissue_kept():
    image = chest()
    marked = image.copy()
    marked[10:18, 12:40:3] = 255  # letters: thin white strokes in the corner
    cleaned = remove_burned_in_marks(marked)
    assert (marked[10:18, 12:40] == 255).sum() > 50
    assert cleaned[10:18, 12:40].max() < 100  # replaced by the dark background around them
    untouched = np.ones_like(image, bool)
    untouched[5:23, 7:45] = False
    assert np.array_equal(cleaned[untouched], image[untouched])


def test_large_bright_regions_are_not_marks():
    image = chest()
    image[:, 100:] = 250  # a bright region far larger than 1% of the image
    assert np.array_equal(remove_burned_in_marks(image), image)


@pytest.mark.parametrize("method", ["clahe", "hist", "percentile"])
def test_equalization_spreads_a_narrow_histogram(method):
    narrow = (100 + chest() // 12).astype(np.uint8)  # values within ~20 grey levels
    spread = equalize(narrow, method)
    assert spread.dtype == np.uint8 and spread.shape == narrow.shape
    assert np.ptp(spread) > 4 * np.ptp(narrow) and spread.std() > 3 * narrow.std()


def test_no_equalization_is_identity():
    image = chest()
    assert equalize(image, "none") is image


def test_padding_keeps_the_aspect_ratio():
    wide = np.full((50, 100), 200, np.uint8)
    square = pad_to_square(wide)
    assert square.shape == (100, 100)
    assert (square[25:75] == 200).all() and (square[:25] == 0).all() and (square[75:] == 0).all()
    small = resize(wide, 32, "pad")
    rows = np.flatnonzero(small.max(axis=1) > 100)
    assert small.shape == (32, 32) and 15 <= len(rows) <= 17  # the content keeps its 2:1 shape
    assert (resize(wide, 32, "stretch") > 100).all()


def test_lung_box_finds_both_lung_fields():
    top, bottom, left, right = lung_box(chest())
    assert 10 <= top <= 40 and 88 <= bottom <= 118
    assert left <= 0.3 * 128 - 10 and right >= 0.7 * 128 + 10
    assert crop_lungs(chest()).shape == (bottom - top, right - left)


def test_lung_crop_leaves_images_without_lungs_unchanged():
    flat = np.random.default_rng(0).integers(100, 110, (64, 64)).astype(np.uint8)
    assert lung_box(flat) is None and crop_lungs(flat) is flat


def test_default_preprocessing_is_a_plain_resize():
    image = chest(100)
    assert np.array_equal(preprocess(image, 32, PreprocessConfig()), resize(image, 32, "stretch"))
    robust = PreprocessConfig(
        trim_borders=True, crop_top=0.08, remove_marks=True, lung_crop=True, equalize="clahe", aspect="pad"
    )
    assert preprocess(image, 32, robust).shape == (32, 32)
