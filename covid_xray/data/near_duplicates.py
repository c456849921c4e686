"""Near-duplicate searches on perceptual hashes and thumbnails: every pair of images close enough to be one picture.

Up to `EXHAUSTIVE_MAX` images the thumbnail search compares all pairs by matrix products; above it, a faiss HNSW
index on the thumbnails' principal axes finds the candidates, each then checked exactly.
"""

from __future__ import annotations

from collections.abc import Iterator

import faiss
import numpy as np
from sklearn.decomposition import PCA


def hamming_pairs(hashes: list[str], max_distance: int) -> list[tuple[int, int, int]]:
    """All index pairs (i, j, distance), i < j, whose 64-bit hex hashes differ in at most max_distance bits.

    Multi-index hashing: split into max_distance + 1 bands, two hashes that close agree exactly on at least one band
    (pigeonhole), so the pairs sharing a band bucket are all candidates there are; each is then checked exactly.
    """
    if len(hashes) < 2:
        return []
    values = np.array([int(h, 16) for h in hashes], dtype=np.uint64)
    edges = np.linspace(0, 64, min(max_distance + 1, 64) + 1).round().astype(int)
    firsts, seconds = [], []
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        band = (values >> np.uint64(low)) & np.uint64((1 << int(high - low)) - 1)
        i, j = _pairs_within_buckets(band)
        firsts.append(i)
        seconds.append(j)
    i, j = unique_pairs(np.concatenate(firsts), np.concatenate(seconds), len(values))
    distance = np.bitwise_count(values[i] ^ values[j])
    close = distance <= max_distance
    return [(int(a), int(b), int(d)) for a, b, d in zip(i[close], j[close], distance[close], strict=True)]


def _pairs_within_buckets(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i < j) of equal keys."""
    order = np.argsort(keys, kind="stable")
    starts = np.flatnonzero(np.r_[True, keys[order][1:] != keys[order][:-1]])
    sizes = np.diff(np.r_[starts, len(keys)])
    firsts, seconds = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for start, size in zip(starts[sizes > 1], sizes[sizes > 1], strict=True):
        members = np.sort(order[start : start + size])
        a, b = np.triu_indices(size, 1)
        firsts.append(members[a])
        seconds.append(members[b])
    return np.concatenate(firsts), np.concatenate(seconds)


def unique_pairs(i: np.ndarray, j: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct unordered pairs with i != j, as (low, high) arrays sorted by low then high."""
    low, high = np.minimum(i, j).astype(np.int64), np.maximum(i, j).astype(np.int64)
    codes = np.unique(low[low != high] * n + high[low != high])
    return codes // n, codes % n


# Up to this many images the thumbnail and crop searches compare all pairs, above it they use an index: on the
# shared data (1,590 images) the all-pairs crop search took 21 s and the indexed one 139 s in one run
# (benchmarks/dedup_recall.json); all pairs takes N² memory (about 60 bytes per pair), 1.5 GB at this size.
EXHAUSTIVE_MAX = 5_000


def principal_projection(vectors: np.ndarray, dimensions: int) -> np.ndarray:
    """`vectors` on their first `dimensions` principal axes (fitted on a fixed sample of 20,000 rows), float32.

    The axes are orthonormal, so no two projected points are farther apart than the vectors themselves."""
    sample = vectors[np.random.default_rng(0).permutation(len(vectors))[:20_000]]
    components = PCA(min(dimensions, *sample.shape), random_state=0).fit(sample).components_
    return np.ascontiguousarray(vectors @ components.T, np.float32)


def hnsw_index(vectors: np.ndarray, neighbours: int, construction_breadth: int, metric: int) -> faiss.IndexHNSWFlat:
    """A faiss HNSW index holding `vectors` (float32 rows), built on one thread: a threaded build is not
    deterministic. Its searches run on every core, and each query's answer does not depend on the threads."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        index = faiss.IndexHNSWFlat(vectors.shape[1], neighbours, metric)
        index.hnsw.efConstruction = construction_breadth
        index.add(vectors)
    finally:
        faiss.omp_set_num_threads(threads)
    return index


THUMBNAIL_NEIGHBOURS = 16  # first nearest neighbours asked of the index for each thumbnail (more where all pass)


def correlated_pairs(
    thumbnails: np.ndarray, min_correlation: float, dimensions: int = 32, exhaustive_max: int = EXHAUSTIVE_MAX
) -> Iterator[tuple[int, int, float]]:
    """Index pairs (i, j, r), i < j, whose thumbnail correlation r is at least min_correlation.

    Thumbnails are unit vectors, so r >= t is a distance of at most sqrt(2 (1 - t)). Projected on `dimensions`
    principal axes, no two points come closer than they are, so every such pair lies within that radius there too.
    The projections go into an HNSW nearest-neighbour index (faiss); each thumbnail asks it for its
    THUMBNAIL_NEIGHBOURS nearest, and again for four times as many while even the farthest of them is inside the
    radius, so a cluster of copies of any size is found whole. Each candidate is then checked on the full thumbnails.
    Cost grows as N log N (a ball-tree radius search here grew as N^2.08: benchmarks/thumbnail_search.json); on
    the shared data it finds exactly the pairs that comparing all pairs finds (tests/test_dedup.py).
    """
    n = len(thumbnails)
    if n < 2:
        return
    thumbnails = np.asarray(thumbnails, np.float32)
    if n <= exhaustive_max:  # matrix products are cheaper than the index here; the same pairs (tests/test_dedup.py)
        for start in range(0, n, 2048):
            block = thumbnails[start : start + 2048] @ thumbnails.T
            for a, j in zip(*np.nonzero(block >= min_correlation), strict=True):
                if start + a < j:
                    yield start + int(a), int(j), float(block[a, j])
        return
    projected = principal_projection(thumbnails, dimensions)
    radius_squared = (np.sqrt(max(2.0 * (1.0 - min_correlation), 0.0)) + 1e-4) ** 2  # faiss's L2 is squared
    index = hnsw_index(projected, neighbours=32, construction_breadth=64, metric=faiss.METRIC_L2)
    firsts, seconds = [], []
    asking, k = np.arange(n), THUMBNAIL_NEIGHBOURS
    while len(asking):
        k = min(k, n)
        index.hnsw.efSearch = max(64, k)
        distance, nearest = index.search(projected[asking], k)
        inside = (distance <= radius_squared) & (nearest >= 0)
        whole = ~inside[:, -1] | (k == n)  # the farthest asked is outside the radius: every one inside was found
        rows, columns = np.nonzero(inside[whole])
        firsts.append(asking[whole][rows])
        seconds.append(nearest[whole][rows, columns])
        asking, k = asking[~whole], 4 * k
    i, j = unique_pairs(np.concatenate(firsts), np.concatenate(seconds), n)
    correlation = np.einsum("pd,pd->p", thumbnails[i], thumbnails[j])
    for a, b, r in zip(i, j, correlation, strict=True):
        if r >= min_correlation:
            yield int(a), int(b), float(r)
