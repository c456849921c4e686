"""Exact and near-duplicate removal across and within sources, and patient grouping for splits.

Public COVID sets copy each other: the same picture appears renamed and re-encoded in several
sources and under several patient ids. One copy of each picture is kept (the one from the source
listed first in the config); every other copy is dropped with its reason. Patients that shared a
picture are joined into one `group_id`, so a patient split cannot put one person on both sides.
"""

from __future__ import annotations

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
    """All index pairs (i, j, distance) with i < j whose 64-bit hex hashes differ in at most max_distance bits."""
    if len(hashes) < 2:
        return []
    values = np.array([int(h, 16) for h in hashes], dtype=np.uint64)
    bits = np.unpackbits(values.view(np.uint8).reshape(-1, 8), axis=1).astype(np.uint8)
    pairs = []
    for i in range(len(values) - 1):
        distance = np.count_nonzero(bits[i + 1 :] != bits[i], axis=1)
        for offset in np.flatnonzero(distance <= max_distance):
            pairs.append((i, i + 1 + int(offset), int(distance[offset])))
    return pairs


def thumbnail(pixels: np.ndarray, side: int = 32) -> np.ndarray:
    """A zero-mean, unit-norm side×side thumbnail vector, for correlation between images."""
    from PIL import Image

    small = np.asarray(Image.fromarray(pixels).resize((side, side), Image.Resampling.BOX), dtype=np.float32).ravel()
    small -= small.mean()
    norm = np.linalg.norm(small)
    return small / norm if norm else small


def correlated_pairs(thumbnails: np.ndarray, min_correlation: float, chunk: int = 2048):
    """Index pairs (i, j, r) with i < j whose thumbnail correlation r is at least min_correlation."""
    for start in range(0, len(thumbnails), chunk):
        block = thumbnails[start : start + chunk] @ thumbnails.T
        for a, j in zip(*np.nonzero(block >= min_correlation)):
            i = start + int(a)
            if i < j:
                yield i, int(j), float(block[a, j])


def deduplicate(
    manifest: pd.DataFrame, thumbnails: np.ndarray, source_order: list[str], max_distance: int, min_correlation: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep one image per cluster of exact (sha256) or near duplicates.

    Near duplicates are re-encoded, resized or renamed copies: perceptual hashes (column `phash`) at most
    `max_distance` bits apart, or thumbnails (rows of `thumbnails`, aligned with `manifest`) correlated at
    least `min_correlation`. `manifest` needs columns source, path, label, patient_id, sha256, phash.
    Returns the kept rows with a `group_id` column, and the drops (source, item, reason).
    """
    rank = {source: i for i, source in enumerate(source_order)}
    order = np.lexsort((manifest["path"].to_numpy(), manifest["source"].map(rank).to_numpy()))
    frame = manifest.iloc[order].reset_index(drop=True)
    thumbnails = thumbnails[order]
    images = UnionFind(range(len(frame)))
    distance_to = {}
    for i, j in _same_sha_pairs(frame["sha256"]):
        images.union(i, j)
        distance_to[(i, j)] = "exact duplicate"
    for i, j, distance in hamming_pairs(list(frame["phash"]), max_distance):
        images.union(i, j)
        distance_to.setdefault((i, j), f"near duplicate (hash distance {distance})")
    for i, j, correlation in correlated_pairs(thumbnails, min_correlation):
        images.union(i, j)
        distance_to.setdefault((i, j), f"near duplicate (thumbnail correlation {correlation:.3f})")

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


def _same_sha_pairs(shas: pd.Series):
    first: dict[str, int] = {}
    for index, sha in enumerate(shas):
        if sha in first:
            yield first[sha], index
        else:
            first[sha] = index
