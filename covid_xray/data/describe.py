"""Describe image files for ingest: hash, decode through the cache, and keep what deduplication needs; in parallel
processes, in the order given.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from .cache import ImageCache
from .decode import ImageError, sha256_file
from .parallel import available_cores


@dataclass(frozen=True)
class Described:
    """What ingest keeps of one decoded file (no model pixels: they stay in the cache)."""

    sha256: str
    phash: str
    width: int
    height: int
    thumbnail: np.ndarray
    crop_descriptor: np.ndarray
    from_cache: bool


def describe(cache: ImageCache, path: str | Path) -> Described | str:
    """Hash `path`, fill the cache for it and return its description, or the reason it is unusable (a drop)."""
    try:
        sha = sha256_file(path)
        hits = cache.hits
        image = cache.get(path, sha)
    except (ImageError, OSError) as error:
        return str(error)
    return Described(
        sha, image.phash, image.width, image.height, image.thumbnail, image.crop_descriptor, cache.hits > hits
    )


_worker_cache: ImageCache | None = None


def _start_worker(cache: ImageCache) -> None:
    global _worker_cache
    _worker_cache = cache


def _describe_in_worker(path: str) -> Described | str:
    assert _worker_cache is not None, "the pool's initializer sets the cache"  # noqa: S101 - a programming error
    return describe(_worker_cache, path)


def describe_all(
    cache: ImageCache, paths: list[str], workers: int | None = None, progress: bool | None = None
) -> Iterator[Described | str]:
    """`describe` of every path, in the order of `paths`, decoded by `workers` processes (default: all cores).

    Processes rather than threads: decoding, the perceptual hash and preprocessing are partly pure Python. They are
    spawned (not forked), so a caller that has TensorFlow's threads running is safe. `progress`: a tqdm bar on
    stderr (None: only when stderr is a terminal).
    """
    from tqdm import tqdm

    workers = min(workers or available_cores(), max(len(paths), 1))
    bar = tqdm(
        total=len(paths),
        desc="decoding images",
        unit="img",
        disable=None if progress is None else not progress,
        mininterval=1.0,
    )
    with bar:
        if workers == 1:
            for path in paths:
                yield describe(cache, path)
                bar.update()
            return
        chunk = max(1, min(64, len(paths) // (workers * 8)))
        with ProcessPoolExecutor(
            workers, mp_context=get_context("spawn"), initializer=_start_worker, initargs=(cache,)
        ) as pool:
            for result in pool.map(_describe_in_worker, [str(p) for p in paths], chunksize=chunk):
                yield result
                bar.update()
