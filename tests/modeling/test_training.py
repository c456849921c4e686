import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from fixtures import tiny_split

from covid_xray.config import ModelConfig
from covid_xray.data.transform import model_input
from covid_xray.modeling.training import train_model


def test_frozen_vgg_features_are_cached_and_reused(tmp_path):
    config = ModelConfig(name="v", kind="vgg16", weights="none", epochs=1, batch_size=4, head={"dense_units": [4]})
    train, val = tiny_split(8, 0, tmp_path), tiny_split(4, 100, tmp_path)
    first = train_model(
        config, train, val, n_classes=2, image_size=32, image_cache_key="a", cache_dir=str(tmp_path), verbose=0
    )
    assert (first.feature_cache_hits, first.feature_cache_misses) == (0, 12)
    second = train_model(
        config, train, val, n_classes=2, image_size=32, image_cache_key="a", cache_dir=str(tmp_path), verbose=0
    )
    assert (second.feature_cache_hits, second.feature_cache_misses) == (12, 0)
    changed = train_model(
        config, train, val, n_classes=2, image_size=32, image_cache_key="b", cache_dir=str(tmp_path), verbose=0
    )
    assert changed.feature_cache_misses == 12  # other preprocessing: other features


def test_cnn_trains_and_records_one_history_point_per_epoch(tmp_path):
    config = ModelConfig(
        name="c",
        kind="cnn",
        conv_filters=[4],
        head={"dense_units": [4]},
        epochs=2,
        batch_size=4,
        early_stopping_patience=0,
        augment=True,
    )
    result = train_model(
        config,
        tiny_split(8, 0, tmp_path),
        tiny_split(4, 50, tmp_path),
        n_classes=2,
        image_size=32,
        image_cache_key="a",
        cache_dir=str(tmp_path),
        verbose=0,
    )
    assert len(result.history["loss"]) == 2 and len(result.history["val_argmax_accuracy"]) == 2
    # the per-epoch curves must not reuse the names of the evaluate step's metrics at the operating point
    assert not {"accuracy", "val_accuracy"} & set(result.history)
    assert result.model.predict(model_input(tiny_split(2, 9, tmp_path).pixels()), verbose=0).shape == (2, 2)


class StopAfterEpoch(keras.callbacks.Callback):
    """Simulates a killed job: raises after `epoch` has finished (and been backed up)."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt(f"interrupted after epoch {epoch}")


def test_interrupted_training_resumes_from_its_checkpoint(tmp_path):
    config = ModelConfig(
        name="c",
        kind="cnn",
        conv_filters=[4],
        head={"dense_units": [4]},
        epochs=4,
        batch_size=4,
        early_stopping_patience=0,
    )
    train, val = tiny_split(8, 0, tmp_path), tiny_split(4, 50, tmp_path)
    kwargs = dict(n_classes=2, image_size=32, image_cache_key="a", cache_dir=str(tmp_path), verbose=0)
    with pytest.raises(KeyboardInterrupt):
        train_model(config, train, val, callbacks=[StopAfterEpoch(1)], **kwargs)
    assert list((tmp_path / "checkpoints").iterdir())  # epochs 0 and 1 are backed up
    epochs_seen = []
    record = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: epochs_seen.append(epoch))
    resumed = train_model(config, train, val, callbacks=[record], **kwargs)
    assert epochs_seen == [2, 3]  # continues the epoch count instead of restarting at 0
    assert len(resumed.history["loss"]) == 2
    assert not any(p.is_dir() and any(p.iterdir()) for p in (tmp_path / "checkpoints").iterdir())  # done: removed


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_computes_in_16_bits_with_a_float32_output(tmp_path, policy):
    for kind in ("cnn", "vgg16"):
        config = ModelConfig(
            name=kind,
            kind=kind,
            weights="none",
            conv_filters=[4],
            head={"dense_units": [4]},
            epochs=1,
            batch_size=4,
            precision=policy,
        )
        result = train_model(
            config,
            tiny_split(8, 0, tmp_path),
            tiny_split(4, 50, tmp_path),
            n_classes=2,
            image_size=32,
            image_cache_key="a",
            cache_dir=str(tmp_path),
            verbose=0,
        )
        model = result.model
        assert model(model_input(tiny_split(2, 9, tmp_path).pixels())).dtype == "float32"
        convs = [
            layer
            for layer in _all_layers(model)
            if isinstance(layer, keras.layers.Conv2D) and layer.name != "vgg_preprocess"
        ]
        compute = policy.removeprefix("mixed_")
        assert convs and all(layer.compute_dtype == compute and layer.variable_dtype == "float32" for layer in convs)
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored afterwards


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def test_training_runs_under_mirrored_strategy_on_two_devices(tmp_path):
    """Several GPUs use MirroredStrategy; two logical CPUs stand in for them (a fresh process splits the CPU)."""
    script = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parents[1])!r})
import tensorflow as tf
tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
                                           [tf.config.LogicalDeviceConfiguration()] * 2)
from covid_xray.config import ModelConfig
from covid_xray.modeling import backend, training
from pathlib import Path
from fixtures import tiny_split
backend.ACCELERATOR = "CPU"
assert backend.replicas() == 2
config = ModelConfig(name="c", kind="cnn", conv_filters=[4], head={{"dense_units": [4]}}, epochs=1, batch_size=4)
root = Path({str(tmp_path)!r})
result = training.train_model(config, tiny_split(8, 0, root), tiny_split(4, 50, root), n_classes=2, image_size=32,
                              image_cache_key="a", cache_dir={str(tmp_path)!r}, verbose=0)
print("replicas ok", len(result.history["loss"]))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "replicas ok 1" in done.stdout


def test_training_runs_data_parallel_on_two_devices_under_jax(tmp_path):
    """Under JAX several accelerators use keras.distribution.DataParallel; two host CPU devices stand in for them."""
    pytest.importorskip("jax")
    script = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parents[1])!r})
import keras
from covid_xray.config import ModelConfig
from covid_xray.modeling import backend, training
from pathlib import Path
from fixtures import tiny_split
backend.ACCELERATOR = "CPU"
assert keras.backend.backend() == "jax" and backend.replicas() == 2
seen = []
class Record(keras.callbacks.Callback):
    def on_train_batch_begin(self, batch, logs=None):
        seen.append(type(keras.distribution.distribution()).__name__)
config = ModelConfig(name="c", kind="cnn", conv_filters=[4], head={{"dense_units": [4]}}, epochs=1, batch_size=4)
root = Path({str(tmp_path)!r})
result = training.train_model(config, tiny_split(8, 0, root), tiny_split(4, 50, root), n_classes=2, image_size=32,
                              image_cache_key="a", cache_dir={str(tmp_path)!r}, callbacks=[Record()], verbose=0)
assert keras.distribution.distribution() is None  # restored afterwards
print("data parallel ok", len(result.history["loss"]), set(seen))
"""
    env = os.environ | {"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "data parallel ok 1 {'DataParallel'}" in done.stdout


def test_vgg16_phases_change_only_the_layers_they_should(tmp_path):
    from covid_xray.modeling.models import VGG16_CONV_LAYERS, build_backbone

    original = build_backbone(32, "none")
    original.save_weights(tmp_path / "start.weights.h5")
    common = dict(
        name="v",
        kind="vgg16",
        weights=str(tmp_path / "start.weights.h5"),
        head={"dense_units": [4]},
        epochs=1,
        batch_size=4,
        early_stopping_patience=0,
    )
    kwargs = dict(n_classes=2, image_size=32, image_cache_key="a", cache_dir=str(tmp_path / "cache"), verbose=0)
    train, val = tiny_split(8, 0, tmp_path), tiny_split(4, 50, tmp_path)

    def changed(model) -> set[str]:
        backbone = model.get_layer("vgg16")
        return {
            name
            for name in VGG16_CONV_LAYERS
            if not np.array_equal(backbone.get_layer(name).get_weights()[0], original.get_layer(name).get_weights()[0])
        }

    phase_one = train_model(ModelConfig(**common), train, val, **kwargs).model
    assert changed(phase_one) == set()  # phase 1 trains the head only
    both = train_model(
        ModelConfig(**common, fine_tune_blocks=1, fine_tune_epochs=1, fine_tune_learning_rate=0.01),
        train,
        val,
        **kwargs,
    )
    assert changed(both.model) == {"block5_conv1", "block5_conv2", "block5_conv3"}
    assert len(both.history["fine_tune_loss"]) == 1
