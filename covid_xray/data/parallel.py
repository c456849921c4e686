"""How many cores this process may use, and a map over them by threads (for NumPy and faiss work that releases the
GIL)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def on_all_cores(function: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
    """[function(item) for item in items], in order, by one thread per core: for chunks of NumPy and faiss work,
    which release the GIL (each chunk independent of the others, so the result does not depend on the threads)."""
    with ThreadPoolExecutor(available_cores()) as threads:
        return list(threads.map(function, items))
