"""Splits by reference, pixels streamed: the same model inputs, batches and training as the in-memory arrays they
replace, on real images with the default preprocessing, and split artifacts that carry no pixels."""

from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import yaml

from covid_xray.config import parse_config
from covid_xray.data.dataset import image_cache, split_of
from covid_xray.data.decode import sha256_file
from covid_xray.data.stream import Split
from covid_xray.modeling.batches import pixel_batches
from covid_xray.modeling.features import FeatureCache, feature_extractor
from covid_xray.modeling.models import build_model
from covid_xray.modeling.sampling import balanced_dataset, cell_ids
from covid_xray.modeling.training import training_inputs
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


def old_arrays(split: Split) -> np.ndarray:
    """The model input before the redesign: `load_split`'s stacked pixels through `as_images`."""
    return split.cache.open().stack(split.keys)[..., None].astype("float32")


def old_training_inputs(x: np.ndarray, split: Split, config, seed: int = 0) -> tf.data.Dataset:
    """`training_inputs` before the redesign (no augmentation): the pixel arrays sliced into tf.data."""
    if config.sampling == "source_label":
        cells, _ = cell_ids(np.asarray(split.sources), split.labels)
        return balanced_dataset(x, split.labels, cells, config.batch_size, seed)
    dataset = tf.data.Dataset.from_tensor_slices((x, split.labels.astype("int32")))
    return dataset.shuffle(len(split), seed=seed, reshuffle_each_iteration=True).batch(config.batch_size)


def test_streamed_pixels_are_bit_identical_to_the_old_arrays_of_real_images(real):
    config, rows, split = real
    assert len(split) == 4 * PER_CELL and split.keys == list(rows["sha256"])
    assert list(split.groups) == list(rows["group_id"]) and list(split.sources) == list(rows["source"])
    expected = old_arrays(split)
    assert expected.shape == (len(split), 128, 128, 1) and expected.std() > 10  # real, preprocessed pixels
    streamed = np.concatenate([batch.numpy() for batch in pixel_batches(split, batch_size=5)])
    assert streamed.dtype == np.float32 and np.array_equal(streamed, expected)
    assert np.array_equal(split.subset([3, 1]).pixels(), expected[[3, 1], ..., 0].astype(np.uint8))


@pytest.mark.parametrize("sampling", ["source_label", "shuffle"])
def test_streamed_training_batches_are_the_old_batches_in_the_same_order(real, sampling):
    config, _, split = real
    model = next(m for m in config.models if m.name == "cnn-small").model_copy(
        update={"batch_size": 8, "sampling": sampling}
    )
    new = training_inputs(split, model)["x"]  # no augmentation: the batches themselves
    old = old_training_inputs(old_arrays(split), split, model)
    n_batches = 3 * int(np.ceil(len(split) / model.batch_size))  # three epochs' worth (reshuffled each one)
    if sampling == "shuffle":
        new, old = new.repeat(3), old.repeat(3)
    pairs = list(zip(new.take(n_batches), old.take(n_batches)))
    assert len(pairs) == n_batches
    for (new_x, new_y), (old_x, old_y) in pairs:
        assert np.array_equal(new_x.numpy(), old_x.numpy()) and np.array_equal(new_y.numpy(), old_y.numpy())


def test_training_on_the_stream_gives_the_weights_training_on_arrays_gave(real):
    config, _, split = real
    model_config = next(m for m in config.models if m.name == "cnn-small").model_copy(
        update={"augment": "none", "batch_size": 8}
    )

    def trained(inputs: dict) -> list[np.ndarray]:
        keras.utils.set_random_seed(0)
        model = build_model(model_config, 128, 2)
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(**inputs, epochs=2, shuffle=False, verbose=0)
        return model.get_weights()

    steps = int(np.ceil(len(split) / model_config.batch_size))
    # The first fit of a process ends elsewhere than every later one (Keras' first-call state, with either input),
    # so it is run once first; after it, the same seed gives the same weights run after run.
    trained(training_inputs(split, model_config))
    old = trained({"x": old_training_inputs(old_arrays(split), split, model_config), "steps_per_epoch": steps})
    new = trained(training_inputs(split, model_config))
    assert all(np.array_equal(a, b) for a, b in zip(old, new))


def test_frozen_backbone_features_from_the_stream_are_the_features_of_the_old_arrays(real, tmp_path):
    config, _, split = real
    vgg = next(m for m in config.models if m.name == "vgg16-frozen").model_copy(update={"weights": "none"})
    keras.utils.set_random_seed(0)
    extractor = feature_extractor(build_model(vgg, 128, 2))
    cache = FeatureCache(tmp_path, "k")
    streamed = cache.features(extractor, split, batch_size=8)
    assert (cache.hits, cache.misses) == (0, len(split))
    old = extractor.predict(old_arrays(split), batch_size=8, verbose=0)
    assert np.array_equal(streamed, old)
    assert np.array_equal(cache.features(extractor, split, 8), old) and cache.hits == len(split)  # reused


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
