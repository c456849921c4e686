"""Splits by reference, pixels streamed: the model input is the image cache's pixels bit for bit, on real images with
the default preprocessing, and split artifacts carry no pixels."""

from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import yaml

from covid_xray.config import parse_config
from covid_xray.data.dataset import image_cache, split_of
from covid_xray.data.decode import sha256_file
from covid_xray.data.stream import Split, cached_file, model_input, read_pixels
from covid_xray.modeling.features import FeatureCache, feature_extractor
from covid_xray.modeling.loader import pixel_batches
from covid_xray.modeling.models import build_model
from covid_xray.sources import READERS

ROOT = Path(__file__).resolve().parents[2]
PER_CELL = 6  # images per (source, label): 24 real images


def real_config(tmp: Path, shared: Path, image_size: int = 128):
    """configs/default.yaml (its preprocessing and models) on the shared real sources, with a cache under `tmp`."""
    raw = yaml.safe_load((ROOT / "configs/default.yaml").read_text())
    raw["data"] |= {"root": str(shared), "cache_dir": str(tmp / "cache"), "image_size": image_size}
    return parse_config(raw)


def real_rows(config) -> pd.DataFrame:
    """A few real images of each (source, label) of two sources, decoded into the run's image cache as ingest does."""
    cache, picked = image_cache(config), []
    for source in ("darkcovidnet", "actualmed"):
        spec = next(s for s in config.data.sources if s.label == source)
        reader = READERS[spec.reader]
        found, _ = reader(Path(config.data.root) / spec.path, spec.label, **spec.reader_options()).frames()
        for label in ("covid", "normal"):
            picked.append(found[found["label"] == label].sort_values("path").head(PER_CELL))
    rows = pd.concat(picked, ignore_index=True)
    rows["sha256"] = [sha256_file(path) for path in rows["path"]]
    for path, sha in zip(rows["path"], rows["sha256"]):
        cache.get(path, sha)
    return rows.assign(group_id=rows["patient_id"].astype(str))


@pytest.fixture(scope="module")
def real(tmp_path_factory, shared_datasets):
    tmp = tmp_path_factory.mktemp("stream")
    config = real_config(tmp, shared_datasets)
    rows = real_rows(config)
    return config, rows, split_of(rows, config)


def test_streamed_model_input_is_the_cached_pixels_of_real_images_bit_for_bit(real):
    config, rows, split = real
    assert len(split) == 4 * PER_CELL and split.keys == list(rows["sha256"])
    assert list(split.groups) == list(rows["group_id"]) and list(split.sources) == list(rows["source"])
    cache = image_cache(config)
    cached = np.stack([cache.get(path, key).pixels for path, key in zip(rows["path"], rows["sha256"])])
    assert cached.shape == (len(split), 128, 128) and cached.std() > 10  # real, preprocessed pixels
    batches = pixel_batches(split, batch_size=5)
    streamed = np.concatenate([batches[i][0] for i in range(len(batches))])
    assert streamed.dtype == np.float32 and np.array_equal(streamed, model_input(cached))
    assert np.array_equal(streamed[..., 0], cached.astype(np.float32))
    assert np.array_equal(split.subset([3, 1]).pixels(), cached[[3, 1]])


def test_frozen_backbone_features_from_the_stream_are_the_features_of_the_stacked_pixels(real, tmp_path):
    config, _, split = real
    vgg = next(m for m in config.models if m.name == "vgg16-frozen").model_copy(update={"weights": "none"})
    keras.utils.set_random_seed(0)
    extractor = feature_extractor(build_model(vgg, 128, 2))
    cache = FeatureCache(tmp_path, "k")
    streamed = cache.features(extractor, split, batch_size=8)
    assert (cache.hits, cache.misses) == (0, len(split))
    stacked = extractor.predict(model_input(split.pixels()), batch_size=8, verbose=0)
    assert np.array_equal(streamed, stacked)
    assert np.array_equal(cache.features(extractor, split, 8), streamed) and cache.hits == len(split)  # reused


def test_split_artifact_holds_no_pixels_and_round_trips(real, tmp_path, shared_datasets):
    from steps.materializers import SplitMaterializer

    _, _, split = real
    sizes = {}
    for image_size in (64, 128):
        other_config = real_config(tmp_path / str(image_size), shared_datasets, image_size)
        other = split_of(real_rows(other_config), other_config)
        folder = tmp_path / f"artifact-{image_size}"
        folder.mkdir()
        SplitMaterializer(str(folder)).save(other)
        sizes[image_size] = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        loaded = SplitMaterializer(str(folder)).load(Split)
        assert loaded.keys == other.keys and np.array_equal(loaded.labels, other.labels)
        assert list(loaded.sources) == list(other.sources) and list(loaded.groups) == list(other.groups)
        assert loaded.cache == other.cache  # the same cache identity: the same pixels are streamed
    assert abs(sizes[64] - sizes[128]) <= 2  # 4x the pixels, the same artifact ("64" vs "128" in size and folder)
    assert sizes[128] < 300 * len(split)  # ~keys and labels, vs 16 KB of pixels per image at 128 px


def test_a_split_of_images_missing_from_the_cache_is_refused_naming_the_first(real, tmp_path, shared_datasets):
    config, rows, _ = real
    other = real_config(tmp_path, shared_datasets, 96)  # a cache nobody filled
    with pytest.raises(ValueError, match=f"24 of 24 images are not in the image cache .* {rows['sha256'][0]}"):
        split_of(rows, other)


def test_cached_pixels_are_read_as_np_load_reads_them_and_a_foreign_file_is_refused(real, tmp_path):
    _, _, split = real
    path = cached_file(split.cache.folder, split.keys[0])
    with np.load(path) as data:
        assert np.array_equal(read_pixels(path, 128), data["pixels"])
    np.savez(tmp_path / "other.npz", pixels=np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError, match=r"other\.npz: not the 128x128 uint8 pixels the image cache writes"):
        read_pixels(tmp_path / "other.npz", 128)
