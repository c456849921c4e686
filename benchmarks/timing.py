"""The timers the benchmarks share: the best of several runs after an optional warm-up run, alone or interleaved."""

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


def side_by_side(works: dict, repeats: int, warm_up: bool = True) -> dict:
    """Best wall time of each of `works` (name → callable), their runs interleaved after one warm-up run of each."""
    if warm_up:
        for work in works.values():
            work()
    best = dict.fromkeys(works, float("inf"))
    for _ in range(repeats):
        for name, work in works.items():
            started = time.perf_counter()
            work()
            best[name] = min(best[name], time.perf_counter() - started)
    return best
