"""Splits by reference, pixels streamed: a split is its rows' content keys, labels, sources and patient groups, and the
identity of the image cache that holds their pixels; training and evaluation read the pixels batch by batch.

Nothing of size N × pixels is held in memory or written as a pipeline artifact: a split of 100,000 images is a few
MB of keys, and training reads one batch of cached pixels at a time (in parallel, ahead of the model). The pixels a
model sees are the cache's (made by the run's InferenceTransform), converted by `transform.model_input`: the same
float32 values whether streamed or stacked in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .cache import ImageCache
from .transform import InferenceTransform


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
        pick = lambda a: None if a is None else np.asarray(a)[rows]  # noqa: E731
        return Split(
            [self.keys[i] for i in rows],
            np.asarray(self.labels)[rows],
            self.cache,
            pick(self.sources),
            pick(self.groups),
        )

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
        listed = lambda a: None if a is None else [str(v) for v in np.asarray(a)]  # noqa: E731
        return {
            "cache": {"root": self.cache.root, "transform": self.cache.transform.to_record()},
            "keys": list(self.keys),
            "labels": np.asarray(self.labels).astype(int).tolist(),
            "sources": listed(self.sources),
            "groups": listed(self.groups),
        }

    @classmethod
    def from_record(cls, record: dict) -> Split:
        cache = CacheRef(record["cache"]["root"], InferenceTransform.from_record(record["cache"]["transform"]))
        array = lambda v: None if v is None else np.asarray(v, dtype=str)  # noqa: E731
        return cls(
            [str(k) for k in record["keys"]],
            np.asarray(record["labels"], np.int32),
            cache,
            array(record["sources"]),
            array(record["groups"]),
        )
