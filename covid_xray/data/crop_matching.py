"""Crop-tolerant duplicate matching: copies that another source re-cropped and rescaled independently along each axis.

A copy in another source may be re-cropped and rescaled independently along each axis
(e.g. squeezed to a square). On a descriptor stretched to a square, such a copy is a per-axis scale and shift: the
central window of one image is some window of the other. Candidates come from a coarse search over window centres
and sizes (each image's central window against every window of the others, through a nearest-neighbour index);
each pair's best window is then refined at a finer resolution and scored by the
correlation of high-pass detail (ribs, vessels, devices), which copies share and different pictures do not.
"""

from __future__ import annotations

from collections.abc import Iterator

import faiss
import numpy as np
from scipy.ndimage import gaussian_filter

from .descriptors import CROP_SIDE
from .near_duplicates import EXHAUSTIVE_MAX, hnsw_index, unique_pairs
from .parallel import on_all_cores

CORE = (0.25, 0.5)  # start and size, as fractions of each axis, of the central window looked for in the other image
WINDOW_CENTRES = np.linspace(0.4, 0.6, 5)
WINDOW_SIZES = CORE[1] * np.geomspace(0.7, 1.45, 4)
CROP_CANDIDATES_PER_IMAGE = 4


def _box_resampling(starts, sizes, m: int, n: int = CROP_SIDE) -> np.ndarray:
    """(V, m, n) matrices; row p of matrix v averages its input over the p-th m-th of
    [starts[v], starts[v] + sizes[v]]."""
    starts, sizes = np.atleast_1d(starts)[..., None], np.atleast_1d(sizes)[..., None]
    edges = (starts + sizes * np.arange(m + 1) / m) * n
    low, high, x = edges[..., :-1, None], edges[..., 1:, None], np.arange(n)
    weight = np.clip(np.minimum(high, x + 1) - np.maximum(low, x), 0, None)
    return (weight / np.maximum(weight.sum(-1, keepdims=True), 1e-9)).astype(np.float32)


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = vectors - vectors.mean(-1, keepdims=True)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-6)


def detail_of(descriptors: np.ndarray) -> np.ndarray:
    pixels = descriptors.astype(np.float32)
    return pixels - gaussian_filter(pixels, (0, 4, 4))


def _windows() -> np.ndarray:
    return np.array([(c - s / 2, s) for c in WINDOW_CENTRES for s in WINDOW_SIZES], np.float32)


class LazyDetail:
    """`detail_of` descriptors, computed for the rows asked for: the whole float32 stack would take 37 KB per image
    (3.7 GB at 100,000 images, twice that while filtering); each image's detail depends on that image only."""

    def __init__(self, descriptors: np.ndarray):
        self.descriptors = descriptors

    def __len__(self) -> int:
        return len(self.descriptors)

    def __getitem__(self, rows) -> np.ndarray:
        return detail_of(self.descriptors[rows])


Detail = np.ndarray | LazyDetail
CropPair = tuple[int, int, tuple[float, ...]]  # (i, j, window): where i's central window was found in j


def _cores(detail: Detail, m: int, chunk: int = 1024) -> np.ndarray:
    core = _box_resampling(*CORE, m)[0]
    return np.concatenate(
        [
            _unit((core @ detail[start : start + chunk] @ core.T).reshape(-1, m * m))
            for start in range(0, len(detail), chunk)
        ]
    )


def _views(detail: Detail, resample: np.ndarray, m: int) -> np.ndarray:
    """(b, K*K, m*m): every window (K per axis) of each image, box-resampled to m x m, as unit vectors."""
    k = len(resample)
    rows = (resample.reshape(k * m, CROP_SIDE) @ detail).reshape(len(detail), k, m, CROP_SIDE)
    views = (rows @ resample.reshape(k * m, CROP_SIDE).T).reshape(len(detail), k, m, k, m)
    return _unit(views.transpose(0, 1, 3, 2, 4).reshape(len(detail), k * k, m * m))


NEIGHBOURS_PER_WINDOW = 4  # nearest central windows asked for each window of an image (its own is usually one)
# Of the other images an image's windows find (about 800 on 10,000 phantoms: 400 windows × 4 neighbours, mostly
# distinct), it keeps this many times `per_image`, those whose central window matches one of its windows best;
# holding every pair found took 1.8 GB at 10,000 images and grows with N. On the shared data 8 verifies the same
# copies as the all-pairs search; 4 verified one more pair (tests/test_dedup.py).
SEARCH_KEPT_PER_IMAGE = 8


def crop_candidates(detail: Detail, per_image: int, m: int = 10, chunk: int = 64) -> Iterator[CropPair]:
    """Pairs (i, j, window) worth verifying: for every image, the `per_image` others whose best window matches best.

    `window` (y0, height, x0, width) is where i's central window was found in j, as fractions of j's axes. The score
    of (i, j) is the best correlation of i's central window with one of j's windows (or the other way round). The
    central windows go into an HNSW nearest-neighbour index (faiss); every window of every image asks it for its
    NEIGHBOURS_PER_WINDOW nearest central windows; of the images found, each image keeps the SEARCH_KEPT_PER_IMAGE
    × `per_image` whose central window scores best (exactly) among its windows; those pairs get their exact score in
    both directions, and each image keeps its best `per_image`. Cost grows as N log N; memory with N (about
    SEARCH_KEPT_PER_IMAGE × per_image pairs per image; the windows are made chunk by chunk, never all at once).
    On the shared data this keeps every pair the all-pairs search (`crop_candidates_all_pairs`) verifies as a copy.
    """
    n = len(detail)
    cores = _cores(detail, m)
    windows = _windows()
    resample = _box_resampling(windows[:, 0], windows[:, 1], m)
    k = len(windows)
    index = hnsw_index(cores, neighbours=16, construction_breadth=40, metric=faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efSearch = 16
    neighbours = min(NEIGHBOURS_PER_WINDOW, n)
    kept = SEARCH_KEPT_PER_IMAGE * per_image
    starts = range(0, n, chunk)

    def search(start: int) -> tuple[np.ndarray, np.ndarray]:
        views = _views(detail[start : start + chunk], resample, m)
        _, nearest = index.search(views.reshape(-1, m * m), neighbours)
        nearest = nearest.reshape(len(views), -1)
        found, owners = [], []
        for offset, image_views in enumerate(views):  # only the `kept` best of the others found stay candidates
            owner = start + offset
            others = np.unique(nearest[offset])
            others = others[(others >= 0) & (others != owner)]
            best = (cores[others] @ image_views.T).max(1)  # exact: other's central window among this image's
            found.append(others[np.argsort(-best, kind="stable")[:kept]])
            owners.append(np.full(len(found[-1]), owner))
        return unique_pairs(np.concatenate(found), np.concatenate(owners), n)

    found = on_all_cores(search, starts)
    firsts, seconds = (np.concatenate(side) for side in zip(*found, strict=True))
    low, high = unique_pairs(firsts, seconds, n)  # a pair is found from both ends
    # exact score of both directions of every candidate pair: centre of `core` found among the windows of `owner`
    core, owner = np.r_[low, high], np.r_[high, low]
    score, where = np.empty(len(core), np.float32), np.empty(len(core), np.int64)
    by_owner = np.argsort(owner, kind="stable")
    bounds = np.searchsorted(owner[by_owner], np.arange(0, n + chunk, chunk))

    def exact_scores(number: int) -> None:  # fills score and where for the pairs owned by chunk `number` (disjoint)
        start = starts[number]
        views = _views(detail[start : start + chunk], resample, m)
        rows = by_owner[bounds[number] : bounds[number + 1]]
        firsts = np.searchsorted(owner[rows], np.arange(start, start + len(views) + 1))
        for offset, image_views in enumerate(views):
            mine = rows[firsts[offset] : firsts[offset + 1]]
            if len(mine):
                found = cores[core[mine]] @ image_views.T
                score[mine], where[mine] = found.max(1), found.argmax(1)

    on_all_cores(exact_scores, range(len(starts)))
    pairs = len(low)
    forward, backward = score[:pairs], score[pairs:]  # low's centre in high, high's centre in low
    either = np.maximum(forward, backward)
    image, best = np.r_[low, high], np.r_[either, either]
    order = np.lexsort((-best, image))
    rank = np.arange(len(order)) - np.searchsorted(image[order], image[order])
    chosen = np.unique(np.r_[np.arange(pairs), np.arange(pairs)][order[rank < per_image]])
    for p in chosen:
        a, b, at = (low[p], high[p], where[p]) if forward[p] >= backward[p] else (high[p], low[p], where[pairs + p])
        y, x = divmod(int(at), k)
        yield int(a), int(b), (*windows[y], *windows[x])


def crop_candidates_all_pairs(detail: Detail, per_image: int, m: int = 10, chunk: int = 32) -> Iterator[CropPair]:
    """`crop_candidates` by comparing every pair (N² time and memory): the reference the indexed search is held to."""
    n = len(detail)
    cores = _cores(detail, m)
    windows = _windows()
    resample = _box_resampling(windows[:, 0], windows[:, 1], m)
    k = len(windows)
    score = np.full((n, n), -2.0, np.float32)
    where = np.zeros((n, n), np.int32)
    across = resample.reshape(k * m, CROP_SIDE).T
    for start in range(0, n, chunk):
        block = detail[start : start + chunk]
        rows = (resample.reshape(k * m, CROP_SIDE) @ block).reshape(len(block), k, m, CROP_SIDE)
        views = (rows @ across).reshape(len(block), k, m, k, m).transpose(0, 1, 3, 2, 4).reshape(-1, m * m)
        found = (cores @ _unit(views).T).reshape(n, len(block), k * k)
        score[:, start : start + chunk] = found.max(-1)
        where[:, start : start + chunk] = found.argmax(-1)
    np.fill_diagonal(score, -2.0)
    either = np.maximum(score, score.T)
    pairs = set()
    for i, row in enumerate(np.argsort(-either, axis=1)[:, :per_image]):
        for j in row:
            a, b = (i, int(j)) if score[i, j] >= score[j, i] else (int(j), i)
            pairs.add((a, b))
    for a, b in sorted(pairs):
        y, x = divmod(int(where[a, b]), k)
        yield a, b, (*windows[y], *windows[x])


def refine_match(detail: Detail, pairs: list[CropPair], m: int = 24, chunk: int = 128) -> np.ndarray:
    """Correlation of each pair's central window with its best window nearby (three rounds of local search).

    Chunks of pairs are refined on all cores by threads (numpy releases the GIL in its array work; there is no
    Python-level loop per pair to serialize them), each chunk on its own, so the result does not depend on how many.
    """
    cores = _cores(detail, m)
    parts = [pairs[start : start + chunk] for start in range(0, len(pairs), chunk)]
    scores = on_all_cores(lambda part: _refine_chunk(detail, cores, part, m), parts)
    return np.concatenate(scores) if scores else np.empty(0, np.float32)


def _refine_chunk(detail: Detail, cores: np.ndarray, part: list[CropPair], m: int) -> np.ndarray:
    a = np.array([p[0] for p in part])
    b = detail[np.array([p[1] for p in part])]
    window = np.array([p[2] for p in part], np.float32)  # (P, 4): y0, h, x0, w
    best = np.full(len(part), -2.0, np.float32)
    for shift, ratio in ((0.03, 1.12), (0.012, 1.05), (0.005, 1.02)):
        options = [(d, r) for d in (-shift, 0.0, shift) for r in (1 / ratio, 1.0, ratio)]
        ys = np.stack([_around(window[:, 0], window[:, 1], d, r) for d, r in options], 1)  # (P, 9, 2)
        xs = np.stack([_around(window[:, 2], window[:, 3], d, r) for d, r in options], 1)
        rows = _box_resampling(ys[..., 0], ys[..., 1], m) @ b[:, None]  # (P, 9, m, N)
        across = _box_resampling(xs[..., 0], xs[..., 1], m).reshape(len(part), 1, -1, CROP_SIDE)
        views = (rows @ across.transpose(0, 1, 3, 2)).reshape(len(part), 9, m, 9, m).transpose(0, 1, 3, 2, 4)
        found = np.einsum("pijd,pd->pij", _unit(views.reshape(len(part), 9, 9, -1)), cores[a]).reshape(len(part), -1)
        pick = found.argmax(1)
        best = np.maximum(best, found[np.arange(len(part)), pick])
        iy, ix = np.divmod(pick, 9)
        window = np.concatenate([ys[np.arange(len(part)), iy], xs[np.arange(len(part)), ix]], 1)
    return best


def _around(starts: np.ndarray, sizes: np.ndarray, shift: float, ratio: float) -> np.ndarray:
    centre = starts + sizes / 2 + shift
    return np.stack([centre - sizes * ratio / 2, sizes * ratio], -1)


def cropped_pairs(
    descriptors: np.ndarray,
    min_correlation: float,
    per_image: int = CROP_CANDIDATES_PER_IMAGE,
    exhaustive_max: int = EXHAUSTIVE_MAX,
) -> Iterator[tuple[int, int, float]]:
    """Index pairs (i, j, r) whose detail correlates at least `min_correlation` after crop-tolerant alignment."""
    if len(descriptors) < 2:
        return
    exhaustive = len(descriptors) <= exhaustive_max  # the same copies either way; all pairs is faster up to here
    detail = detail_of(descriptors) if exhaustive else LazyDetail(descriptors)
    search = crop_candidates_all_pairs if exhaustive else crop_candidates
    pairs = list(search(detail, min(per_image, len(descriptors) - 1)))
    for (i, j, _), score in zip(pairs, refine_match(detail, pairs), strict=True):
        if score >= min_correlation:
            yield min(i, j), max(i, j), float(score)
