import keras
import numpy as np
import pytest
from fixtures import tiny_split

from covid_xray.config import AdversarialConfig, ModelConfig
from covid_xray.modeling import backend
from covid_xray.modeling.adversarial import GradientReversal, divergence, reversal_strength, with_source_head
from covid_xray.modeling.features import feature_extractor
from covid_xray.modeling.models import build_model
from covid_xray.modeling.training import train_model


def test_gradient_reversal_passes_values_unchanged_and_flips_the_gradient():
    layer = GradientReversal(weight=0.7, warmup_steps=2, ramp_steps=10)
    x = np.random.default_rng(0).normal(0, 3, (4, 5)).astype("float32")
    upstream = np.linspace(-2, 2, 5, dtype="float32")  # d loss / d output, so the gradient is not all ones
    for steps in (0, 5, 100):  # in the warm-up, on the ramp, at full strength
        layer.steps.assign(float(steps))
        value, gradient = backend.value_and_gradient(lambda t: layer(t) * upstream, x)
        strength = float(reversal_strength(steps, 0.7, 2, 10))
        np.testing.assert_array_equal(value, x * upstream)  # forward: exactly the identity
        np.testing.assert_allclose(gradient, np.broadcast_to(-strength * upstream, x.shape), rtol=1e-6)
    assert strength > 0.69  # at full strength the gradient is reversed, not only scaled
    without = keras.layers.Identity()
    _, plain = backend.value_and_gradient(lambda t: without(t) * upstream, x)
    assert np.all(np.sign(gradient) == -np.sign(plain))


def test_reversal_strength_is_zero_in_the_warmup_then_rises_to_the_weight():
    strengths = [float(reversal_strength(step, 0.5, 10, 20)) for step in range(0, 40)]
    assert strengths[:11] == [0.0] * 11
    assert all(a < b for a, b in zip(strengths[10:30], strengths[11:31], strict=True))
    assert strengths[-1] == pytest.approx(0.5 * (2 / (1 + np.exp(-10.0)) - 1))


def test_adversarial_training_trains_a_source_head_and_returns_the_classifier_alone(tmp_path):
    train, val = tiny_split(16, 0, tmp_path), tiny_split(8, 100, tmp_path)
    train.sources = np.array(["a", "b"] * 4 + ["b", "a"] * 4)
    val.sources = np.array(["a", "b"] * 4)
    config = ModelConfig(
        name="adv",
        kind="cnn",
        conv_filters=[4],
        head={"dense_units": [8]},
        epochs=3,
        batch_size=4,
        sampling="source_label",
        adversarial=AdversarialConfig(weight=0.5, warmup_epochs=1, ramp_epochs=1, units=4),
    )
    result = train_model(
        config, train, val, n_classes=2, image_size=32, image_cache_key="k", cache_dir=str(tmp_path), verbose=0
    )
    # the served model has one output, the class probabilities, and no source head
    assert len(result.model.outputs) == 1 and result.model.output_shape == (None, 2)
    assert "source" not in [layer.name for layer in result.model.layers]
    assert len(result.history["source_accuracy"]) == 3 and len(result.history["val_probabilities_loss"]) == 3
    assert np.isfinite(result.history["loss"]).all()


def test_adversarial_needs_balanced_batches_and_features_it_can_change():
    with pytest.raises(ValueError, match="sampling: source_label"):
        ModelConfig(name="a", kind="cnn", adversarial={})
    with pytest.raises(ValueError, match="linear head has no features"):
        ModelConfig(name="a", kind="vgg16", head={"dense_units": []}, sampling="source_label", adversarial={})


def test_a_runaway_source_loss_is_named_and_a_steady_one_is_not():
    # the measured curve of cnn-small-adversarial-w1 on the default data (configs/recipes.yaml), and a steady one
    runaway = {"source_loss": [1.6, 1.62, 102.08, 1839.67, 6250.2], "val_source_loss": [1.6, 1.6, 90.0, 900.0, 1752.0]}
    warning = divergence(runaway)
    assert warning is not None and "source_loss rose from 1.60 to 6250.2 by epoch 5" in warning
    assert divergence({"m3_source_loss": [1.6, 9000.0]}).startswith("adversarial divergence: m3_source_loss")
    assert divergence({"source_loss": [5.61, 8.62, 16.93, 13.33, 5.99], "loss": [1.0, 50.0]}) is None


def test_the_source_head_of_a_vgg16_trained_on_images_reads_the_heads_hidden_layer():
    config = ModelConfig(name="v", kind="vgg16", weights="none", head={"dense_units": [8]}, sampling="source_label")
    model = build_model(config, 32, 2)
    training = with_source_head(model, 3, AdversarialConfig(), steps_per_epoch=4)
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 1)).astype("float32")
    head = model.get_layer("head")
    hidden = keras.Model(head.inputs, head.layers[-2].output)
    reversal = keras.Model(training.inputs, training.get_layer("reversal").output)
    # the reversal sees the head's 8 hidden units, not the backbone's 512 pooled features (frozen in phase 1)
    pooled = feature_extractor(model)(images)
    assert reversal.output.shape[-1] == 8
    np.testing.assert_allclose(reversal(images), hidden(pooled), rtol=1e-5, atol=1e-6)
