import numpy as np
from fixtures import xray_like

from covid_xray.config import ModelConfig
from covid_xray.training import Split, train_model


def tiny_split(n: int, seed: int) -> Split:
    labels = np.arange(n) % 2
    images = np.stack([np.asarray(xray_like(seed + i, "covid" if y == 0 else "normal").resize((32, 32))) for i, y in enumerate(labels)])
    return Split(images, labels.astype(np.int32), [f"k{seed + i}" for i in range(n)])


def test_frozen_vgg_features_are_cached_and_reused(tmp_path):
    config = ModelConfig(name="v", kind="vgg16", weights="none", epochs=1, batch_size=4, head={"dense_units": [4]})
    train, val = tiny_split(8, 0), tiny_split(4, 100)
    first = train_model(config, train, val, n_classes=2, image_size=32, image_cache_key="a", cache_dir=str(tmp_path), verbose=0)
    assert (first.feature_cache_hits, first.feature_cache_misses) == (0, 12)
    second = train_model(config, train, val, n_classes=2, image_size=32, image_cache_key="a", cache_dir=str(tmp_path), verbose=0)
    assert (second.feature_cache_hits, second.feature_cache_misses) == (12, 0)
    changed = train_model(config, train, val, n_classes=2, image_size=32, image_cache_key="b", cache_dir=str(tmp_path), verbose=0)
    assert changed.feature_cache_misses == 12  # other preprocessing: other features


def test_cnn_trains_and_records_one_history_point_per_epoch(tmp_path):
    config = ModelConfig(name="c", kind="cnn", conv_filters=[4], head={"dense_units": [4]}, epochs=2, batch_size=4,
                         early_stopping_patience=0, augment=True)  # fmt: skip
    result = train_model(config, tiny_split(8, 0), tiny_split(4, 50), n_classes=2, image_size=32,
                         image_cache_key="a", cache_dir=str(tmp_path), verbose=0)  # fmt: skip
    assert len(result.history["loss"]) == 2 and len(result.history["val_accuracy"]) == 2
    assert result.model.predict(tiny_split(2, 9).images[..., None].astype("float32"), verbose=0).shape == (2, 2)
