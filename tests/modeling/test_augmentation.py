"""Augmentation layers: active only while training, inside the pixel range, and none for 'none'."""

import keras
import numpy as np

from covid_xray.modeling.augmentation import RandomAffine, RandomBlur, RandomGamma, augmenter


def test_gamma_keeps_range_and_endpoints_and_changes_the_middle():
    images = np.tile(np.linspace(0, 255, 16, dtype=np.float32), (4, 16, 1))[..., None]
    out = keras.ops.convert_to_numpy(RandomGamma(seed=3)(images, training=True))
    assert out.min() >= 0 and out.max() <= 255.001
    assert np.allclose(out[:, :, 0], 0) and np.allclose(out[:, :, -1], 255, atol=1e-3)
    assert not np.allclose(out, images)
    assert np.array_equal(keras.ops.convert_to_numpy(RandomGamma(seed=3)(images, training=False)), images)


def test_acquisition_augmentation_changes_pixels_in_training_only_and_keeps_shape_and_range():
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 1)).astype(np.float32)
    layers = augmenter("acquisition", seed=0)
    out = keras.ops.convert_to_numpy(layers(images, training=True))
    assert out.shape == images.shape and float(np.abs(out - images).mean()) > 1.0
    assert float(out.min()) >= 0.0 and float(out.max()) <= 255.0
    assert np.allclose(keras.ops.convert_to_numpy(layers(images, training=False)), images)
    assert augmenter("none") is None
    assert augmenter("radiograph").name == "augment_radiograph"


def test_the_affine_resampling_is_the_identity_at_zero_and_moves_pixels_otherwise():
    images = np.random.default_rng(1).uniform(0, 255, (3, 24, 24, 1)).astype(np.float32)
    still = RandomAffine(rotation=0.0, translation=0.0, zoom=0.0, shear=0.0, seed=0)
    assert np.allclose(keras.ops.convert_to_numpy(still(images, training=True)), images, atol=1e-3)
    moved = keras.ops.convert_to_numpy(RandomAffine(0.03, 0.05, 0.1, 0.05, seed=0)(images, training=True))
    assert moved.shape == images.shape and float(np.abs(moved - images).mean()) > 1.0


def test_blur_keeps_a_flat_image_flat_and_softens_an_edge():
    flat = np.full((2, 16, 16, 1), 100.0, np.float32)
    assert np.allclose(keras.ops.convert_to_numpy(RandomBlur(seed=0)(flat, training=True)), 100.0, atol=1e-3)
    edge = np.zeros((1, 16, 16, 1), np.float32)
    edge[:, :, 8:] = 255.0
    blurred = keras.ops.convert_to_numpy(RandomBlur(strength=1.0, seed=3)(edge, training=True))
    assert blurred[0, 5, 2, 0] == 0.0 and 0.0 < blurred[0, 5, 7, 0] < 255.0  # only the pixels beside the edge change
