"""Splits by reference, pixels streamed: a split is its rows' content keys, labels, sources and patient groups, and the
identity of the image cache that holds their pixels; tf.data reads the pixels from that cache batch by batch.

Nothing of size N × pixels is held in memory or written as a pipeline artifact: a split of 100,000 images is a few
MB of keys, and training reads one batch of cached pixels at a time (in parallel, ahead of the model). The pixels a
model sees are the cache's (made by the run's InferenceTransform), converted by `transform.model_input`: the same
float32 values whether streamed or stacked in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from .images import ImageCache
from .transform import InferenceTransform, model_input


@dataclass(frozen=True)
class CacheRef:
    """The identity of an image cache: its root folder and the transform whose pixels it holds (which names its key)."""

    root: str
    transform: InferenceTransform

    @classmethod
    def of(cls, cache: ImageCache) -> CacheRef:
        return cls(str(cache.folder.parents[1]), cache.transform)

    def open(self) -> ImageCache:
        t = self.transform
        return ImageCache(self.root, t.image_size, t.max_pixels, t.min_side, t.preprocess)

    @property
    def image_size(self) -> int:
        return self.transform.image_size


@dataclass
class Split:
    """One split by reference: content keys (sha256), integer labels, sources and patient groups of its rows, and the
    image cache that holds their pixels. `pixels()` reads a few; training and evaluation stream them (`read_rows`)."""

    keys: list[str]
    labels: np.ndarray
    cache: CacheRef
    sources: np.ndarray | None = None  # needed by source_label sampling
    groups: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, rows: Sequence[int] | np.ndarray) -> Split:
        rows = np.asarray(rows, dtype=np.int64)
        pick = (lambda a: None if a is None else np.asarray(a)[rows])  # noqa: E731
        return Split([self.keys[i] for i in rows], np.asarray(self.labels)[rows], self.cache, pick(self.sources),
                     pick(self.groups))  # fmt: skip

    def pixels(self, rows: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """(n, size, size) uint8 cached pixels of `rows` (default all: only for small splits, it is N × pixels)."""
        keys = self.keys if rows is None else [self.keys[i] for i in np.asarray(rows, dtype=np.int64)]
        return self.cache.open().stack(keys)

    def missing(self) -> list[str]:
        """Keys whose pixels are not in the cache (ingest with the same data settings fills it)."""
        cache = self.cache.open()
        return [key for key in self.keys if not cache.has(key)]

    def to_record(self) -> dict:
        """JSON-able: what the split artifact stores (no pixels)."""
        listed = (lambda a: None if a is None else [str(v) for v in np.asarray(a)])  # noqa: E731
        return {"cache": {"root": self.cache.root, "transform": self.cache.transform.to_record()},
                "keys": list(self.keys), "labels": np.asarray(self.labels).astype(int).tolist(),
                "sources": listed(self.sources), "groups": listed(self.groups)}  # fmt: skip

    @classmethod
    def from_record(cls, record: dict) -> Split:
        cache = CacheRef(record["cache"]["root"], InferenceTransform.from_record(record["cache"]["transform"]))
        array = (lambda v: None if v is None else np.asarray(v, dtype=str))  # noqa: E731
        return cls([str(k) for k in record["keys"]], np.asarray(record["labels"], np.int32), cache,
                   array(record["sources"]), array(record["groups"]))  # fmt: skip


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
    return batches.map(lambda rows, labels: (read(rows), labels), num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=True)  # fmt: skip


def labelled_batches(split: Split, batch_size: int, x: Rows | None = None) -> tf.data.Dataset:
    """(model input, label) batches of the split in row order: validation data for `fit`."""
    rows = tf.data.Dataset.from_tensor_slices((np.arange(len(split)), np.asarray(split.labels).astype("int32")))
    return with_rows(rows.batch(batch_size), split if x is None else x).prefetch(tf.data.AUTOTUNE)


def pixel_batches(split: Split, batch_size: int = 32) -> tf.data.Dataset:
    """Model input batches of the split's pixels in row order, streamed from the cache: for `predict`."""
    read = read_rows(split)
    rows = tf.data.Dataset.from_tensor_slices(np.arange(len(split))).batch(batch_size)
    return rows.map(read, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)
