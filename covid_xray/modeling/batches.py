"""Batches for `fit` and `predict`: a split's rows read from the image cache (or from in-memory arrays aligned with it,
such as backbone features), as tf.data pipelines that read ahead of the model.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from ..data.stream import Split
from ..data.transform import model_input

Rows = np.ndarray | Split


def read_rows(x: Rows) -> Callable[[tf.Tensor], tf.Tensor]:
    """A tf.data function from a batch of row indices to those rows' model input: gathered from an in-memory array
    (backbone features, or pixels already converted by `model_input`), or a Split's pixels read from its image cache
    (one cached file per image, converted by `model_input`)."""
    if not isinstance(x, Split):
        table = tf.constant(x)
        return lambda rows: tf.gather(table, rows)
    cache, keys, size = x.cache.open(), list(x.keys), x.cache.image_size

    def load(rows: np.ndarray) -> np.ndarray:
        return model_input(cache.stack([keys[i] for i in rows]))

    def read(rows: tf.Tensor) -> tf.Tensor:
        pixels = tf.numpy_function(load, [rows], tf.float32, stateful=False)
        pixels.set_shape([None, size, size, 1])
        return pixels

    return read


def with_rows(batches: tf.data.Dataset, x: Rows) -> tf.data.Dataset:
    """(row index batch, label batch) → (model input batch, label batch), read in parallel, in order."""
    read = read_rows(x)
    return batches.map(
        lambda rows, labels: (read(rows), labels), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )


def labelled_batches(split: Split, batch_size: int, x: Rows | None = None) -> tf.data.Dataset:
    """(model input, label) batches of the split in row order: validation data for `fit`."""
    rows = tf.data.Dataset.from_tensor_slices((np.arange(len(split)), np.asarray(split.labels).astype("int32")))
    return with_rows(rows.batch(batch_size), split if x is None else x).prefetch(tf.data.AUTOTUNE)


def pixel_batches(split: Split, batch_size: int = 32) -> tf.data.Dataset:
    """Model input batches of the split's pixels in row order, streamed from the cache: for `predict`."""
    read = read_rows(split)
    rows = tf.data.Dataset.from_tensor_slices(np.arange(len(split))).batch(batch_size)
    return rows.map(read, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)
