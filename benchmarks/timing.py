"""The one timer the benchmarks share: the best of several runs, after an optional warm-up run."""

import time


def best_seconds(work, repeats: int, warm_up: bool = True) -> float:
    """Fastest wall time of `repeats` calls of `work` (a first, untimed call warms graph tracing and caches)."""
    if warm_up:
        work()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)
