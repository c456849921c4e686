"""The one inference transform: files and bytes alike, recorded and rebuilt, and the image cache's only pixel path."""

from pathlib import Path

import numpy as np
import pytest
from fixtures import ROBUST, real_images, xray_like
from PIL import Image

from covid_xray.config import PreprocessConfig
from covid_xray.data.cache import ImageCache
from covid_xray.data.decode import ImageError, sha256_file
from covid_xray.data.transform import TRANSFORM_VERSION, InferenceTransform

ROOT = Path(__file__).resolve().parents[2]


def test_default_config_is_the_robust_preprocessing():
    assert ROBUST.trim_borders and ROBUST.remove_marks and ROBUST.equalize == "clahe" and ROBUST.aspect == "pad"


def test_file_and_its_bytes_give_the_same_pixels_and_the_cache_stores_exactly_them(tmp_path, shared_datasets):
    transform = InferenceTransform(48, ROBUST, min_side=64)
    cache = ImageCache(tmp_path, 48, transform.max_pixels, 64, ROBUST)
    assert cache.transform == transform and cache.folder.name.startswith(transform.key)
    for path in real_images(shared_datasets):
        pixels = transform(path)
        assert pixels.shape == (48, 48) and pixels.dtype == np.uint8
        assert np.array_equal(pixels, transform(path.read_bytes()))
        assert np.array_equal(cache.get(path, sha256_file(path)).pixels, pixels), path
    assert cache.misses == len(real_images(shared_datasets))


def test_preprocessing_changes_the_pixels(shared_datasets):
    path = real_images(shared_datasets)[0]
    plain, robust = InferenceTransform(48), InferenceTransform(48, ROBUST)
    assert np.abs(plain(path).astype(int) - robust(path).astype(int)).mean() > 5


def test_record_round_trips_and_names_everything_that_shapes_the_pixels():
    transform = InferenceTransform(64, ROBUST, max_pixels=10**7, min_side=32)
    record = transform.to_record()
    assert record == {
        "version": TRANSFORM_VERSION,
        "image_size": 64,
        "preprocess": ROBUST.model_dump(),
        "max_pixels": 10**7,
        "min_side": 32,
    }
    assert InferenceTransform.from_record(record) == transform
    assert InferenceTransform.from_record(record).key == transform.key
    assert InferenceTransform(64, PreprocessConfig(), 10**7, 32).key != transform.key
    assert InferenceTransform(48, ROBUST, 10**7, 32).key != transform.key


def test_records_this_code_cannot_reproduce_are_refused():
    record = InferenceTransform(64).to_record()
    with pytest.raises(ValueError, match=f"version 2, this code makes version {TRANSFORM_VERSION}"):
        InferenceTransform.from_record(record | {"version": 2})
    with pytest.raises(ValueError, match="not an inference transform record"):
        InferenceTransform.from_record({k: v for k, v in record.items() if k != "min_side"})
    with pytest.raises(ValueError, match="equalize"):
        InferenceTransform.from_record(record | {"preprocess": {"equalize": "magic"}})


def test_bad_inputs_raise_the_reason(tmp_path):
    transform = InferenceTransform(32, min_side=64)
    with pytest.raises(ImageError, match="empty file"):
        transform(b"")
    with pytest.raises(ImageError, match="not a readable image"):
        transform(b"%PDF-1.4 not an image")
    small = tmp_path / "small.png"
    xray_like(1, "covid", size=40).save(small)
    with pytest.raises(ImageError, match="image too small: 40x40"):
        transform(small)


def test_batch_is_float_model_input():
    transform = InferenceTransform(32)
    arrays = [np.full((32, 32), 7, np.uint8), np.zeros((32, 32), np.uint8)]
    batch = transform.batch(arrays)
    assert batch.shape == (2, 32, 32, 1) and batch.dtype == np.float32 and batch[0, 0, 0, 0] == 7.0
    assert transform.batch([]).shape == (0, 32, 32, 1)


def test_a_large_jpeg_is_decoded_small_and_checked_at_its_own_size(tmp_path, shared_datasets):
    """JPEGs are drafted to about four times the model's side; the size checks still read the file's own size, and the
    pixels are those of the whole decode downscaled, within JPEG's DCT-scaling differences."""
    big = tmp_path / "big.jpg"
    Image.open(real_images(shared_datasets)[0]).convert("L").resize((2048, 1792)).save(big, quality=95)
    transform = InferenceTransform(64, ROBUST, min_side=1500)
    drafted = transform.decode(big)
    assert drafted.size == (256, 224)  # 1/8 scale: the longer side is still >= 4 * 64
    assert drafted.info["source_size"] == (2048, 1792)
    assert transform.decode(big, full=True).size == (2048, 1792)
    whole = transform.pixels(transform.decode(big, full=True))
    assert np.abs(transform(big).astype(int) - whole.astype(int)).mean() < 3
    with pytest.raises(ImageError, match="image too small: 2048x1792 \\(minimum side 2000\\)"):
        InferenceTransform(64, ROBUST, min_side=2000).decode(big)
