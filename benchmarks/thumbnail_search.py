"""The thumbnail correlation search on phantoms at two sizes: the HNSW index against the ball tree it replaced.

    python benchmarks/thumbnail_search.py [--n 10000 30000] [--pool /tmp/scale/phantoms] [--out ...json]

Thumbnails are made as ingest makes them (`decode_grayscale`, `resize_square` at the default image size,
`descriptors.thumbnail`) from phantoms 0..N-1 (benchmarks/phantoms.py, written into the pool if missing); the phantoms
are distinct, so 1 % of them get a noisy copy (thumbnail correlation about 0.97) for the searches to find. At each N,
one after the other in one run: `near_duplicates.correlated_pairs` with its index (exhaustive_max=0), and the former
search, a scikit-learn ball-tree radius search on the same 32 principal axes; both must return the same pairs. Writes
the seconds, the pairs found and the growth exponents (log time ratio over log N ratio) to the JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from phantoms import _path, write_phantoms  # noqa: E402

from covid_xray.config import load_config  # noqa: E402
from covid_xray.data import descriptors, near_duplicates  # noqa: E402
from covid_xray.data.decode import decode_grayscale, resize_square  # noqa: E402

IMAGE_SIZE = load_config("configs/default.yaml").data.image_size


def _thumbnail(path: Path) -> np.ndarray:
    return descriptors.thumbnail(resize_square(decode_grayscale(path), IMAGE_SIZE))


def ball_tree_pairs(thumbnails: np.ndarray, min_correlation: float, dimensions: int = 32) -> list[tuple[int, int]]:
    """The search `correlated_pairs` used before its HNSW index (commit d5c13e3), for comparison."""
    from sklearn.neighbors import BallTree

    n = len(thumbnails)
    projected = near_duplicates.principal_projection(thumbnails, dimensions)  # the same projection as the index's
    radius = np.sqrt(max(2.0 * (1.0 - min_correlation), 0.0)) + 1e-4
    tree = BallTree(projected)
    firsts, seconds = [], []
    for start in range(0, n, 4096):
        found = tree.query_radius(projected[start : start + 4096], radius)
        firsts.append(np.repeat(np.arange(start, start + len(found)), [len(f) for f in found]))
        seconds.append(np.concatenate(found))
    i, j = near_duplicates.unique_pairs(np.concatenate(firsts), np.concatenate(seconds), n)
    keep = np.einsum("pd,pd->p", thumbnails[i], thumbnails[j]) >= min_correlation
    return list(zip(i[keep].tolist(), j[keep].tolist()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs=2, default=[10_000, 30_000])
    parser.add_argument("--pool", default="/tmp/scale/phantoms")
    parser.add_argument("--out", default=str(HERE / "thumbnail_search.json"))
    args = parser.parse_args()
    min_correlation = load_config("configs/default.yaml").data.near_duplicate_min_correlation
    largest = max(args.n)
    write_phantoms(args.pool, largest)
    with ProcessPoolExecutor() as workers:
        thumbnails = np.stack(
            list(workers.map(_thumbnail, [_path(args.pool, i) for i in range(largest)], chunksize=256))
        )
    rng = np.random.default_rng(0)
    copies = thumbnails[: largest // 100] + 0.25 / np.sqrt(thumbnails.shape[1]) * rng.standard_normal(
        (largest // 100, thumbnails.shape[1])
    ).astype(np.float32)
    copies -= copies.mean(1, keepdims=True)
    copies /= np.linalg.norm(copies, axis=1, keepdims=True)
    results = {"min_correlation": min_correlation, "image_size": IMAGE_SIZE, "runs": []}
    for n in args.n:
        run = {"n": n}
        searched = np.r_[thumbnails[: n - n // 100], copies[: n // 100]]  # n thumbnails, n // 100 pairs of copies
        started = time.perf_counter()
        indexed = [(a, b) for a, b, _ in near_duplicates.correlated_pairs(searched, min_correlation, exhaustive_max=0)]
        run["hnsw_seconds"] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()
        reference = ball_tree_pairs(searched, min_correlation)
        run["ball_tree_seconds"] = round(time.perf_counter() - started, 2)
        run["pairs"], run["same_pairs"] = len(indexed), indexed == reference
        print(json.dumps(run), flush=True)
        results["runs"].append(run)
    small, large = results["runs"]
    growth = np.log(large["n"] / small["n"])
    results["growth_exponent"] = {
        method: round(float(np.log(large[f"{method}_seconds"] / small[f"{method}_seconds"]) / growth), 2)
        for method in ("hnsw", "ball_tree")
    }
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["growth_exponent"]))


if __name__ == "__main__":
    main()
