"""Exact and near-duplicate removal across and within sources, and patient grouping for splits.

Public COVID sets copy each other: the same picture appears renamed and re-encoded in several
sources and under several patient ids. One copy of each picture is kept (the one from the source
listed first in the config); every other copy is dropped with its reason. Patients that shared a
picture are joined into one `group_id`, so a patient split cannot put one person on both sides.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from .sources.base import display_path


class UnionFind:
    def __init__(self, items):
        self.parent = {item: item for item in items}

    def find(self, item):
        root = item
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[item] != root:
            self.parent[item], item = root, self.parent[item]
        return root

    def union(self, a, b) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            self.parent[max(root_a, root_b)] = min(root_a, root_b)


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
    for low, high in zip(edges[:-1], edges[1:]):
        band = (values >> np.uint64(low)) & np.uint64((1 << int(high - low)) - 1)
        i, j = _pairs_within_buckets(band)
        firsts.append(i)
        seconds.append(j)
    i, j = _unique_pairs(np.concatenate(firsts), np.concatenate(seconds), len(values))
    distance = np.bitwise_count(values[i] ^ values[j])
    close = distance <= max_distance
    return [(int(a), int(b), int(d)) for a, b, d in zip(i[close], j[close], distance[close])]


def _pairs_within_buckets(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i < j) of equal keys."""
    order = np.argsort(keys, kind="stable")
    starts = np.flatnonzero(np.r_[True, keys[order][1:] != keys[order][:-1]])
    sizes = np.diff(np.r_[starts, len(keys)])
    firsts, seconds = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for start, size in zip(starts[sizes > 1], sizes[sizes > 1]):
        members = np.sort(order[start : start + size])
        a, b = np.triu_indices(size, 1)
        firsts.append(members[a])
        seconds.append(members[b])
    return np.concatenate(firsts), np.concatenate(seconds)


def _unique_pairs(i: np.ndarray, j: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct unordered pairs with i != j, as (low, high) arrays sorted by low then high."""
    low, high = np.minimum(i, j).astype(np.int64), np.maximum(i, j).astype(np.int64)
    codes = np.unique(low[low != high] * n + high[low != high])
    return codes // n, codes % n


THUMBNAIL_SIDE = 32


def thumbnail(pixels: np.ndarray, side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """A zero-mean, unit-norm side×side thumbnail vector, for correlation between images."""
    from PIL import Image

    small = np.asarray(Image.fromarray(pixels).resize((side, side), Image.Resampling.BOX), dtype=np.float32).ravel()
    small -= small.mean()
    norm = np.linalg.norm(small)
    return small / norm if norm else small


# Up to this many images the thumbnail and crop searches compare all pairs, above it they use an index: on the
# shared data (1,590 images) the all-pairs crop search took 21 s and the indexed one 139 s in one run
# (benchmarks/dedup_recall.json); all pairs takes N² memory (about 60 bytes per pair), 1.5 GB at this size.
EXHAUSTIVE_MAX = 5_000


def principal_projection(vectors: np.ndarray, dimensions: int) -> np.ndarray:
    """`vectors` on their first `dimensions` principal axes (fitted on a fixed sample of 20,000 rows), float32.

    The axes are orthonormal, so no two projected points are farther apart than the vectors themselves."""
    from sklearn.decomposition import PCA

    sample = vectors[np.random.default_rng(0).permutation(len(vectors))[:20_000]]
    components = PCA(min(dimensions, *sample.shape), random_state=0).fit(sample).components_
    return np.ascontiguousarray(vectors @ components.T, np.float32)


def hnsw_index(vectors: np.ndarray, neighbours: int, construction_breadth: int, metric: int):
    """A faiss HNSW index holding `vectors` (float32 rows), built on one thread: a threaded build is not
    deterministic. Its searches run on every core, and each query's answer does not depend on the threads."""
    import faiss

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


def correlated_pairs(thumbnails: np.ndarray, min_correlation: float, dimensions: int = 32,
                     exhaustive_max: int = EXHAUSTIVE_MAX):
    """Index pairs (i, j, r), i < j, whose thumbnail correlation r is at least min_correlation.

    Thumbnails are unit vectors, so r >= t is a distance of at most sqrt(2 (1 - t)). Projected on `dimensions`
    principal axes, no two points come closer than they are, so every such pair lies within that radius there too.
    The projections go into an HNSW nearest-neighbour index (faiss); each thumbnail asks it for its
    THUMBNAIL_NEIGHBOURS nearest, and again for four times as many while even the farthest of them is inside the
    radius, so a cluster of copies of any size is found whole. Each candidate is then checked on the full thumbnails.
    Cost grows as N log N (a ball-tree radius search here grew as N^2.08: benchmarks/thumbnail_search.json); on
    the shared data it finds exactly the pairs that comparing all pairs finds (tests/test_dedup.py).
    """
    import faiss

    n = len(thumbnails)
    if n < 2:
        return
    thumbnails = np.asarray(thumbnails, np.float32)
    if n <= exhaustive_max:  # matrix products are cheaper than the index here; the same pairs (tests/test_dedup.py)
        for start in range(0, n, 2048):
            block = thumbnails[start : start + 2048] @ thumbnails.T
            for a, j in zip(*np.nonzero(block >= min_correlation)):
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
    i, j = _unique_pairs(np.concatenate(firsts), np.concatenate(seconds), n)
    correlation = np.einsum("pd,pd->p", thumbnails[i], thumbnails[j])
    for a, b, r in zip(i, j, correlation):
        if r >= min_correlation:
            yield int(a), int(b), float(r)


def duplicate_links(
    frame: pd.DataFrame, thumbnails: np.ndarray, max_distance: int, min_correlation: float,
    crop_descriptors: np.ndarray, min_crop_correlation: float,
) -> dict[tuple[int, int], str]:
    """Every pair of rows (i, j), i < j, found to be copies of one picture, with how it was found.

    Exact copies share `sha256`; near copies are re-encoded, resized, re-cropped or renamed: perceptual hashes
    (column `phash`) at most `max_distance` bits apart, thumbnails (rows of `thumbnails`) correlated at least
    `min_correlation`, or crop descriptors (rows of `crop_descriptors`) whose detail correlates at least
    `min_crop_correlation` after crop-tolerant alignment (`cropped_pairs`); and rows whose source documents the same
    upstream image (column `origin`, when present). File names play no other part.
    """
    links = {}
    for i, j in _same_value_pairs(frame["sha256"]):
        links[(i, j)] = "exact duplicate"
    for i, j, distance in hamming_pairs(list(frame["phash"]), max_distance):
        links.setdefault((i, j), f"near duplicate (hash distance {distance})")
    for i, j, correlation in correlated_pairs(thumbnails, min_correlation):
        links.setdefault((i, j), f"near duplicate (thumbnail correlation {correlation:.3f})")
    for i, j, correlation in cropped_pairs(crop_descriptors, min_crop_correlation):
        links.setdefault((i, j), f"near duplicate (re-cropped or rescaled, detail correlation {correlation:.3f})")
    if "origin" in frame:  # documented re-publications (a reader's `origin`): the reason only where pixels found none
        origins = frame["origin"].fillna("").astype(str)
        for i, j in _same_value_pairs(origins.where(origins != "")):
            links.setdefault((i, j), f"re-published copy (documented origin {origins.iat[i]})")
    return links


def deduplicate(
    manifest: pd.DataFrame, thumbnails: np.ndarray, source_order: list[str], max_distance: int, min_correlation: float,
    crop_descriptors: np.ndarray, min_crop_correlation: float,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep one image per cluster of copies (`duplicate_links`); join the patients of a cluster into one group.

    `manifest` needs columns source, path, label, patient_id, sha256, phash; `thumbnails` and `crop_descriptors`
    are aligned with its rows. Returns the kept rows with a `group_id` column, and the drops (source, item, reason).
    """
    rank = {source: i for i, source in enumerate(source_order)}
    order = np.lexsort((manifest["path"].to_numpy(), manifest["source"].map(rank).to_numpy()))
    frame = manifest.iloc[order].reset_index(drop=True)
    distance_to = duplicate_links(frame, thumbnails[order], max_distance, min_correlation, crop_descriptors[order],
                                  min_crop_correlation)  # fmt: skip
    images = UnionFind(range(len(frame)))
    for i, j in distance_to:
        images.union(i, j)

    patients = UnionFind(sorted(set(frame["patient_id"])))
    keep, drops = [], []
    clusters: dict[int, list[int]] = {}
    for index in range(len(frame)):
        clusters.setdefault(images.find(index), []).append(index)
    for members in clusters.values():
        kept = members[0]  # lowest source rank, then path: the frame is sorted that way
        keep.append(kept)
        for other in members[1:]:
            patients.union(frame.at[kept, "patient_id"], frame.at[other, "patient_id"])
            kind = distance_to.get((kept, other)) or distance_to.get((other, kept)) or "near duplicate (via a chain of copies)"
            reason = f"{kind} of {frame.at[kept, 'source']}:{display_path(frame.at[kept, 'path'])}"
            if frame.at[other, "label"] != frame.at[kept, "label"]:
                reason += f" (label conflict: kept {frame.at[kept, 'label']}, dropped {frame.at[other, 'label']})"
            drops.append({"source": frame.at[other, "source"], "item": display_path(frame.at[other, "path"]), "reason": reason})

    kept = frame.loc[sorted(keep)].copy()
    kept["group_id"] = kept["patient_id"].map(patients.find)
    return kept.reset_index(drop=True), pd.DataFrame(drops, columns=["source", "item", "reason"])


def _same_value_pairs(values: pd.Series):
    """(first row, row) for every later row with the value of an earlier one; missing values match nothing."""
    first: dict[str, int] = {}
    for index, sha in enumerate(values):
        if pd.isna(sha):
            continue
        if sha in first:
            yield first[sha], index
        else:
            first[sha] = index


# Crop-tolerant matching. A copy in another source may be re-cropped and rescaled independently along each axis
# (e.g. squeezed to a square). On a descriptor stretched to a square, such a copy is a per-axis scale and shift: the
# central window of one image is some window of the other. Candidates come from a coarse search over window centres
# and sizes (each image's central window against every window of the others, through a nearest-neighbour index);
# each pair's best window is then refined at a finer resolution and scored by the
# correlation of high-pass detail (ribs, vessels, devices), which copies share and different pictures do not.
CROP_SIDE = 96  # side of the stretched grayscale descriptor stored per image
CORE = (0.25, 0.5)  # start and size, as fractions of each axis, of the central window looked for in the other image
WINDOW_CENTRES = np.linspace(0.4, 0.6, 5)
WINDOW_SIZES = CORE[1] * np.geomspace(0.7, 1.45, 4)
CROP_CANDIDATES_PER_IMAGE = 4


def crop_descriptor(pixels: np.ndarray) -> np.ndarray:
    """The original grayscale image box-resized to CROP_SIDE x CROP_SIDE (uint8), aspect ratio dropped on purpose."""
    from PIL import Image

    return np.asarray(Image.fromarray(pixels).resize((CROP_SIDE, CROP_SIDE), Image.Resampling.BOX), dtype=np.uint8)


def _box_resampling(starts, sizes, m: int, n: int = CROP_SIDE) -> np.ndarray:
    """(V, m, n) matrices; row p of matrix v averages its input over the p-th m-th of [starts[v], starts[v]+sizes[v]]."""
    starts, sizes = np.atleast_1d(starts)[..., None], np.atleast_1d(sizes)[..., None]
    edges = (starts + sizes * np.arange(m + 1) / m) * n
    low, high, x = edges[..., :-1, None], edges[..., 1:, None], np.arange(n)
    weight = np.clip(np.minimum(high, x + 1) - np.maximum(low, x), 0, None)
    return (weight / np.maximum(weight.sum(-1, keepdims=True), 1e-9)).astype(np.float32)


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = vectors - vectors.mean(-1, keepdims=True)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-6)


def _detail(descriptors: np.ndarray) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    pixels = descriptors.astype(np.float32)
    return pixels - gaussian_filter(pixels, (0, 4, 4))


def _windows() -> np.ndarray:
    return np.array([(c - s / 2, s) for c in WINDOW_CENTRES for s in WINDOW_SIZES], np.float32)


class LazyDetail:
    """`_detail` of descriptors, computed for the rows asked for: the whole float32 stack would take 37 KB per image
    (3.7 GB at 100,000 images, twice that while filtering); each image's detail depends on that image only."""

    def __init__(self, descriptors: np.ndarray):
        self.descriptors = descriptors

    def __len__(self) -> int:
        return len(self.descriptors)

    def __getitem__(self, rows) -> np.ndarray:
        return _detail(self.descriptors[rows])


def _cores(detail: np.ndarray | LazyDetail, m: int, chunk: int = 1024) -> np.ndarray:
    core = _box_resampling(*CORE, m)[0]
    return np.concatenate([_unit((core @ detail[start : start + chunk] @ core.T).reshape(-1, m * m))
                           for start in range(0, len(detail), chunk)])  # fmt: skip


def _views(detail: np.ndarray, resample: np.ndarray, m: int) -> np.ndarray:
    """(b, K*K, m*m): every window (K per axis) of each image, box-resampled to m x m, as unit vectors."""
    k = len(resample)
    rows = (resample.reshape(k * m, CROP_SIDE) @ detail).reshape(len(detail), k, m, CROP_SIDE)
    views = (rows @ resample.reshape(k * m, CROP_SIDE).T).reshape(len(detail), k, m, k, m)
    return _unit(views.transpose(0, 1, 3, 2, 4).reshape(len(detail), k * k, m * m))


def _on_all_cores(function, items) -> list:
    """[function(item) for item in items], in order, by one thread per core: for chunks of NumPy and faiss work,
    which release the GIL (each chunk independent of the others, so the result does not depend on the threads)."""
    from .images import available_cores  # images builds on this module

    with ThreadPoolExecutor(available_cores()) as threads:
        return list(threads.map(function, items))


NEIGHBOURS_PER_WINDOW = 4  # nearest central windows asked for each window of an image (its own is usually one)
# Of the other images an image's windows find (about 800 on 10,000 phantoms: 400 windows × 4 neighbours, mostly
# distinct), it keeps this many times `per_image`, those whose central window matches one of its windows best;
# holding every pair found took 1.8 GB at 10,000 images and grows with N. On the shared data 8 verifies the same
# copies as the all-pairs search; 4 verified one more pair (tests/test_dedup.py).
SEARCH_KEPT_PER_IMAGE = 8


def crop_candidates(detail: np.ndarray, per_image: int, m: int = 10, chunk: int = 64):
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
    import faiss

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
        return _unique_pairs(np.concatenate(found), np.concatenate(owners), n)

    found = _on_all_cores(search, starts)
    low, high = _unique_pairs(*(np.concatenate(side) for side in zip(*found)), n)  # a pair is found from both ends
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

    _on_all_cores(exact_scores, range(len(starts)))
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


def crop_candidates_all_pairs(detail: np.ndarray, per_image: int, m: int = 10, chunk: int = 32):
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


def refine_match(detail: np.ndarray, pairs: list[tuple[int, int, tuple]], m: int = 24, chunk: int = 128) -> np.ndarray:
    """Correlation of each pair's central window with its best window nearby (three rounds of local search).

    Chunks of pairs are refined on all cores by threads (numpy releases the GIL in its array work; there is no
    Python-level loop per pair to serialize them), each chunk on its own, so the result does not depend on how many.
    """
    cores = _cores(detail, m)
    parts = [pairs[start : start + chunk] for start in range(0, len(pairs), chunk)]
    scores = _on_all_cores(lambda part: _refine_chunk(detail, cores, part, m), parts)
    return np.concatenate(scores) if scores else np.empty(0, np.float32)


def _refine_chunk(detail, cores: np.ndarray, part: list[tuple[int, int, tuple]], m: int) -> np.ndarray:
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


def cropped_pairs(descriptors: np.ndarray, min_correlation: float, per_image: int = CROP_CANDIDATES_PER_IMAGE,
                  exhaustive_max: int = EXHAUSTIVE_MAX):
    """Index pairs (i, j, r) whose detail correlates at least `min_correlation` after crop-tolerant alignment."""
    if len(descriptors) < 2:
        return
    exhaustive = len(descriptors) <= exhaustive_max  # the same copies either way; all pairs is faster up to here
    detail = _detail(descriptors) if exhaustive else LazyDetail(descriptors)
    search = crop_candidates_all_pairs if exhaustive else crop_candidates
    pairs = list(search(detail, min(per_image, len(descriptors) - 1)))
    for (i, j, _), score in zip(pairs, refine_match(detail, pairs)):
        if score >= min_correlation:
            yield min(i, j), max(i, j), float(score)
