"""How many cores this process may use, a map over them by threads (for NumPy and faiss work that releases the GIL),
and one by processes (for pure-Python work)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context
from typing import Any


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def on_all_cores(function: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
    """[function(item) for item in items], in order, by one thread per core: for chunks of NumPy and faiss work,
    which release the GIL (each chunk independent of the others, so the result does not depend on the threads)."""
    with ThreadPoolExecutor(available_cores()) as threads:
        return list(threads.map(function, items))


def in_processes(function: Callable[[Any], Any], items: list[Any], workers: int | None = None) -> Iterator[Any]:
    """function(item) for each item, in order, computed ahead by `workers` spawned processes (default: all cores):
    for pure-Python work such as decoding and preprocessing. `function` must be picklable (a module-level function or
    a `functools.partial` of one); results are yielded as soon as they are ready, so a consumer overlaps with the
    workers. Spawned, not forked: safe in a process that runs TensorFlow's threads."""
    workers = min(workers or available_cores(), max(len(items), 1))
    if workers == 1:
        yield from map(function, items)
        return
    chunk = max(1, min(16, len(items) // (workers * 8)))
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        yield from pool.map(function, items, chunksize=chunk)
