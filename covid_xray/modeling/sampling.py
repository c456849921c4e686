"""Source × label balanced sampling, and augmentation against acquisition differences.

When most COVID images come from one hospital and most normals from another, a shuffled batch
teaches the model the hospital. Drawing evenly over the (source, label) cells that exist makes
every source's own COVID/normal contrast count as much as the contrast between sources.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf


def cell_ids(sources: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, list[tuple[str, int]]]:
    """Integer id of each row's (source, label) cell, and the cells in id order."""
    cells = sorted(set(zip(sources.tolist(), labels.tolist(), strict=True)))
    index = {cell: i for i, cell in enumerate(cells)}
    return np.array([index[cell] for cell in zip(sources.tolist(), labels.tolist(), strict=True)], np.int64), cells


def balanced_dataset(
    x: np.ndarray, labels: np.ndarray, cells: np.ndarray, batch_size: int, seed: int = 0
) -> tf.data.Dataset:
    """An endless dataset of (x, label) batches in which every cell is drawn with the same probability.

    `x` is typically the row indices `np.arange(n)`: the trainer reads the drawn rows' pixels from the image cache
    after batching (covid_xray.stream), so the draw is the same whatever the rows hold.
    Within a cell rows are drawn in shuffled order and repeated, so small cells are oversampled and large
    ones subsampled. Train with `steps_per_epoch=steps_per_epoch(len(labels), batch_size)`."""
    per_cell = []
    for cell in np.unique(cells):
        rows = np.flatnonzero(cells == cell)
        dataset = tf.data.Dataset.from_tensor_slices((x[rows], labels[rows].astype("int32")))
        per_cell.append(dataset.shuffle(len(rows), seed=seed + int(cell), reshuffle_each_iteration=True).repeat())
    weights = [1.0 / len(per_cell)] * len(per_cell)
    return tf.data.Dataset.sample_from_datasets(per_cell, weights=weights, seed=seed).batch(batch_size)


def steps_per_epoch(n_rows: int, batch_size: int) -> int:
    """As many batches as one pass over the rows would take."""
    return max(1, math.ceil(n_rows / batch_size))


def random_gamma(images: tf.Tensor, low: float = 0.7, high: float = 1.4, seed: int = 0) -> tf.Tensor:
    """Per-image gamma curve on 0..255 pixels: the tone curves of different scanners and exports."""
    gamma = tf.random.uniform([tf.shape(images)[0], 1, 1, 1], low, high, seed=seed)
    return 255.0 * tf.pow(tf.clip_by_value(images / 255.0, 0.0, 1.0), gamma)


def augmenter(kind: str, seed: int = 0) -> keras.Sequential | None:
    """Augmentation layers for 0..255 grayscale batches: None for 'none'; 'radiograph' is small rotation, shift,
    zoom, contrast and brightness (never flips: the heart is on the left); 'acquisition' adds blur and shear
    against the differences between scanners (gamma and noise are applied by `augment_batch`)."""
    if kind == "none":
        return None
    layers = [
        keras.layers.RandomRotation(0.03, seed=seed),
        keras.layers.RandomTranslation(0.05, 0.05, seed=seed),
        keras.layers.RandomZoom(0.1, seed=seed),
        keras.layers.RandomContrast(0.2, seed=seed),
        keras.layers.RandomBrightness(0.1, value_range=(0, 255), seed=seed),
    ]
    if kind == "acquisition":
        layers += [
            keras.layers.RandomShear(x_factor=0.05, y_factor=0.05, seed=seed),
            keras.layers.RandomGaussianBlur(factor=0.5, kernel_size=3, sigma=1.0, value_range=(0, 255), seed=seed),
        ]
    return keras.Sequential(layers, name=f"augment_{kind}")


def augment_batch(kind: str, seed: int = 0):
    """A tf.data map function (images, labels) → (augmented images, labels), or None for 'none'."""
    layers = augmenter(kind, seed)
    if layers is None:
        return None

    def apply(images, labels):
        if kind == "acquisition":
            images = random_gamma(images, seed=seed)
        images = layers(images, training=True)
        if kind == "acquisition":  # sensor noise, up to 4 grey levels
            sigma = tf.random.uniform([tf.shape(images)[0], 1, 1, 1], 0.0, 4.0, seed=seed)
            images = images + sigma * tf.random.normal(tf.shape(images), seed=seed)
        images = tf.clip_by_value(images, 0.0, 255.0)
        return images, labels

    return apply
