"""Augmentation against acquisition differences, as Keras layers: they run on the accelerator inside the model under
every backend, only while it trains (the saved model never holds them).

'radiograph' is a small rotation, shift, zoom, contrast and brightness change (never flips: the heart is on the left);
'acquisition' adds shear, blur, a gamma curve and sensor noise against the differences between scanners.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers


class RandomGamma(layers.Layer):
    """A per-image gamma curve on 0..255 pixels, gamma uniform in [low, high]: the tone curves of scanners and
    exports."""

    def __init__(self, low: float = 0.7, high: float = 1.4, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.low, self.high = low, high
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training:
            return images
        shape = (keras.ops.shape(images)[0], 1, 1, 1)
        gamma = keras.random.uniform(shape, self.low, self.high, seed=self.seed_generator)
        return 255.0 * keras.ops.power(keras.ops.clip(images / 255.0, 0.0, 1.0), gamma)


class SensorNoise(layers.Layer):
    """Gaussian noise whose standard deviation is drawn per image, up to `max_sigma` grey levels, then clipped."""

    def __init__(self, max_sigma: float = 4.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.max_sigma = max_sigma
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training:
            return images
        sigma = keras.random.uniform(
            (keras.ops.shape(images)[0], 1, 1, 1), 0.0, self.max_sigma, seed=self.seed_generator
        )
        noise = keras.random.normal(keras.ops.shape(images), seed=self.seed_generator)
        return keras.ops.clip(images + sigma * noise, 0.0, 255.0)


class PixelRange(layers.Layer):
    """Clips to the 0..255 pixel range: contrast and brightness changes may leave it."""

    def call(self, images):
        return keras.ops.clip(images, 0.0, 255.0)


def augmenter(kind: str, seed: int = 0) -> keras.Sequential | None:
    """The augmentation layers of `kind` for 0..255 grayscale batches, in float32 whatever the precision policy;
    None for 'none'."""
    if kind == "none":
        return None
    kwargs: dict[str, Any] = {"seed": seed, "dtype": "float32"}
    stack = [
        layers.RandomRotation(0.03, **kwargs),
        layers.RandomTranslation(0.05, 0.05, **kwargs),
        layers.RandomZoom(0.1, **kwargs),
        layers.RandomContrast(0.2, **kwargs),
        layers.RandomBrightness(0.1, value_range=(0, 255), **kwargs),
    ]
    if kind == "acquisition":
        stack = [
            RandomGamma(**kwargs),
            *stack,
            layers.RandomShear(x_factor=0.05, y_factor=0.05, **kwargs),
            layers.RandomGaussianBlur(factor=0.5, kernel_size=3, sigma=1.0, value_range=(0, 255), **kwargs),
            SensorNoise(**kwargs),
        ]
    return keras.Sequential([*stack, PixelRange(dtype="float32")], name=f"augment_{kind}")
