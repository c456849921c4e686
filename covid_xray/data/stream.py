"""Splits by reference, pixels streamed: a split is its rows' content keys, labels, sources and patient groups, and the
identity of the image cache that holds their pixels; training and evaluation read the pixels batch by batch.

Nothing of size N × pixels is held in memory or written as a pipeline artifact: a split of 100,000 images is a few
MB of keys, and training reads one batch of cached pixels at a time (in parallel, ahead of the model). The pixels a
model sees are the cache's (made by the run's InferenceTransform), converted by `model_input`: the same float32
values whether streamed or stacked in memory.

Only NumPy: the cache's file layout is defined here (`cached_file`), and the image cache (decoding on a miss) builds
on it, so reading a split needs no image decoder (the GPU benchmark reads splits on a machine without one).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Bump when the cached file's fields change (3: the crop-tolerant duplicate descriptor), so old files are not read.
CACHE_FORMAT = 3


def record_key(record: dict) -> str:
    """Short content hash of a transform's record: it names the cache folder of the pixels that transform makes."""
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:12]


def cache_folder(root: str | Path, transform_record: dict) -> Path:
    """The folder of an image cache rooted at `root` that holds the pixels of the transform `transform_record`."""
    return Path(root) / "images" / f"{record_key(transform_record)}-f{CACHE_FORMAT}"


def cached_file(folder: Path, sha256: str) -> Path:
    """Where the cache in `folder` keeps the image whose content hash is `sha256`."""
    return folder / sha256[:2] / f"{sha256}.npz"


def read_pixels(path: Path, size: int) -> np.ndarray:
    """The (size, size) uint8 pixels of a cached file, read straight from its uncompressed `pixels.npy` member.

    np.load would parse the member's header with ast.literal_eval. The loader reads in worker threads, and CPython
    3.11 before 3.11.8 can raise "AST constructor recursion depth mismatch" when threads build ASTs at the same time
    (github.com/python/cpython/issues/106905); reading the bytes is also about twice as fast
    (benchmarks/loader.py). The header is checked for the dtype and shape the cache writes."""
    with zipfile.ZipFile(path) as archive:
        raw = archive.read("pixels.npy")
    header = raw[: len(raw) - size * size]
    if not raw.startswith(b"\x93NUMPY") or b"'|u1'" not in header or f"({size}, {size})".encode() not in header:
        raise ValueError(f"{path}: not the {size}x{size} uint8 pixels the image cache writes")
    return np.frombuffer(raw, np.uint8, count=size * size, offset=len(header)).reshape(size, size)


def model_input(pixels: np.ndarray) -> np.ndarray:
    """The model input of transformed pixels: (n, size, size) uint8 → float32 (n, size, size, 1), exactly (the models
    rescale 0..255 themselves). The one conversion: training, evaluation, serving and explanations all call it."""
    return np.asarray(pixels)[..., None].astype(np.float32)


@dataclass(frozen=True)
class CacheRef:
    """The identity of an image cache: its root folder and the record of the transform whose pixels it holds."""

    root: str
    transform: dict = field(hash=False)  # InferenceTransform.to_record()

    @property
    def folder(self) -> Path:
        return cache_folder(self.root, self.transform)

    @property
    def image_size(self) -> int:
        return int(self.transform["image_size"])

    def has(self, sha256: str) -> bool:
        return cached_file(self.folder, sha256).is_file()

    def stack(self, keys: Sequence[str]) -> np.ndarray:
        """Cached pixels of `keys` as one (n, size, size) uint8 array."""
        if not len(keys):
            return np.zeros((0, self.image_size, self.image_size), np.uint8)
        folder, size = self.folder, self.image_size
        return np.stack([read_pixels(cached_file(folder, key), size) for key in keys])


@dataclass
class Split:
    """One split by reference: content keys (sha256), integer labels, sources and patient groups of its rows, and the
    image cache that holds their pixels. `pixels()` reads a few; training and evaluation stream them in batches
    (`model_input_of`)."""

    keys: list[str]
    labels: np.ndarray
    cache: CacheRef
    sources: np.ndarray | None = None  # needed by source_label sampling
    groups: np.ndarray | None = None
    # The rows' findings (covid, normal, pneumonia) where the label merges several (covid_vs_rest): source_label
    # sampling draws evenly over (source, finding) cells, so a source's pneumonia counts as much as its normals.
    findings: np.ndarray | None = None

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
            pick(self.findings),
        )

    def of_findings(self, findings: Sequence[str] | None) -> np.ndarray:
        """Whether each row's finding is one of `findings` (every row for None, or a split that records none)."""
        if findings is None or self.findings is None:
            return np.ones(len(self), bool)
        return np.isin(np.asarray(self.findings), list(findings))

    def with_findings(self, findings: Sequence[str] | None) -> Split:
        """The rows whose finding is one of `findings` (all rows for None, or a split that records no findings)."""
        if findings is None or self.findings is None:
            return self
        return self.subset(np.flatnonzero(self.of_findings(findings)))

    def pixels(self, rows: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """(n, size, size) uint8 cached pixels of `rows` (default all: only for small splits, it is N × pixels)."""
        keys = self.keys if rows is None else [self.keys[i] for i in np.asarray(rows, dtype=np.int64)]
        return self.cache.stack(keys)

    def model_input_of(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """The model input of `rows`: their cached pixels through `model_input`."""
        return model_input(self.pixels(rows))

    def missing(self) -> list[str]:
        """Keys whose pixels are not in the cache (ingest with the same data settings fills it)."""
        return [key for key in self.keys if not self.cache.has(key)]

    def to_record(self) -> dict:
        """JSON-able: what the split artifact stores (no pixels)."""
        listed = lambda a: None if a is None else [str(v) for v in np.asarray(a)]  # noqa: E731
        return {
            "cache": {"root": self.cache.root, "transform": self.cache.transform},
            "keys": list(self.keys),
            "labels": np.asarray(self.labels).astype(int).tolist(),
            "sources": listed(self.sources),
            "groups": listed(self.groups),
            "findings": listed(self.findings),
        }

    @classmethod
    def from_record(cls, record: dict) -> Split:
        cache = CacheRef(record["cache"]["root"], dict(record["cache"]["transform"]))
        array = lambda v: None if v is None else np.asarray(v, dtype=str)  # noqa: E731
        return cls(
            [str(k) for k in record["keys"]],
            np.asarray(record["labels"], np.int32),
            cache,
            array(record["sources"]),
            array(record["groups"]),
            array(record.get("findings")),
        )
