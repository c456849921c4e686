"""Augmentation against acquisition differences, as Keras layers: they run on the accelerator inside the model under
every backend, only while it trains (the saved model never holds them).

'radiograph' is a small rotation, shift and zoom, a contrast and a brightness change (never flips: the heart is on the
left); 'acquisition' adds shear, blur, a gamma curve and sensor noise against the differences between scanners.

The geometric changes are one affine transform per image (`RandomAffine`), sampled once: Keras' separate
RandomRotation, RandomTranslation, RandomZoom and RandomShear interpolate the image once each, which under JAX made
augmentation cost more than the VGG16 step it feeds (benchmarks/augmentation.py, docs/gpu.md).
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import layers


class RandomAffine(layers.Layer):
    """Per image: a rotation of up to `rotation` x 360 degrees, a shift of up to `translation` of each side, a zoom
    of up to `zoom` in or out and a shear of up to `shear`, about the centre, as one bilinear resampling with
    reflected borders."""

    def __init__(
        self, rotation: float, translation: float, zoom: float, shear: float = 0.0, seed: int | None = None, **kwargs
    ):
        super().__init__(**kwargs)
        self.rotation, self.translation, self.zoom, self.shear = rotation, translation, zoom, shear
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training:
            return images
        n = keras.ops.shape(images)[0]
        height, width = images.shape[1], images.shape[2]

        def uniform(limit: float):
            return keras.random.uniform((n,), -limit, limit, seed=self.seed_generator)

        angle = uniform(2 * math.pi * self.rotation)
        scale = 1.0 / (1.0 + uniform(self.zoom))
        shear_x, shear_y = uniform(self.shear), uniform(self.shear)
        shift_x, shift_y = uniform(self.translation) * width, uniform(self.translation) * height
        cos, sin = keras.ops.cos(angle) * scale, keras.ops.sin(angle) * scale
        # output pixel (x, y) reads input pixel (a0 x + a1 y + a2, b0 x + b1 y + b2): rotation x shear x zoom about
        # the centre, plus the shift
        a0, a1 = cos - sin * shear_y, cos * shear_x - sin
        b0, b1 = sin + cos * shear_y, sin * shear_x + cos
        cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
        a2 = cx + shift_x - (a0 * cx + a1 * cy)
        b2 = cy + shift_y - (b0 * cx + b1 * cy)
        zeros = keras.ops.zeros_like(a0)
        transform = keras.ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
        return keras.ops.image.affine_transform(images, transform, interpolation="bilinear", fill_mode="reflect")


class RandomBlur(layers.Layer):
    """Each image blended with its 3 x 3 Gaussian blur (sigma 1), by an amount uniform in [0, `strength`]."""

    def __init__(self, strength: float = 1.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.strength = strength
        self.seed_generator = keras.random.SeedGenerator(seed)
        line = np.exp(-0.5 * np.arange(-1, 2) ** 2)
        self.kernel = (np.outer(line, line) / np.outer(line, line).sum()).reshape(3, 3, 1, 1).astype("float32")

    def call(self, images, training=None):
        if not training:
            return images
        padded = keras.ops.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="reflect")
        blurred = keras.ops.depthwise_conv(padded, self.kernel, padding="valid")
        amount = keras.random.uniform(
            (keras.ops.shape(images)[0], 1, 1, 1), 0.0, self.strength, seed=self.seed_generator
        )
        return images + amount * (blurred - images)


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
    acquisition = kind == "acquisition"
    stack = [
        RandomAffine(rotation=0.03, translation=0.05, zoom=0.1, shear=0.05 if acquisition else 0.0, **kwargs),
        layers.RandomContrast(0.2, **kwargs),
        layers.RandomBrightness(0.1, value_range=(0, 255), **kwargs),
    ]
    if acquisition:
        stack = [RandomGamma(**kwargs), *stack, RandomBlur(**kwargs), SensorNoise(**kwargs)]
    return keras.Sequential([*stack, PixelRange(dtype="float32")], name=f"augment_{kind}")
