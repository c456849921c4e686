"""Exact and near-duplicate removal across and within sources, and patient grouping for splits.

Public COVID sets copy each other: the same picture appears renamed and re-encoded in several
sources and under several patient ids. One copy of each picture is kept (the one from the source
listed first in the config); every other copy is dropped with its reason. Patients that shared a
picture are joined into one `group_id`, so a patient split cannot put one person on both sides.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import DisjointSet

from ..sources.base import display_path
from .crop_matching import cropped_pairs
from .near_duplicates import correlated_pairs, hamming_pairs


def duplicate_links(
    frame: pd.DataFrame,
    thumbnails: np.ndarray,
    max_distance: int,
    min_correlation: float,
    crop_descriptors: np.ndarray,
    min_crop_correlation: float,
) -> dict[tuple[int, int], str]:
    """Every pair of rows (i, j), i < j, found to be copies of one picture, with how it was found.

    Exact copies share `sha256`; near copies are re-encoded, resized, re-cropped or renamed: perceptual hashes
    (column `phash`) at most `max_distance` bits apart, thumbnails (rows of `thumbnails`) correlated at least
    `min_correlation`, or crop descriptors (rows of `crop_descriptors`) whose detail correlates at least
    `min_crop_correlation` after crop-tolerant alignment (`cropped_pairs`); and rows whose source documents the same
    upstream image (column `origin`, when present). File names play no other part.
    """
    links = {}
    for i, j in same_value_pairs(frame["sha256"]):
        links[(i, j)] = "exact duplicate"
    for i, j, distance in hamming_pairs(list(frame["phash"]), max_distance):
        links.setdefault((i, j), f"near duplicate (hash distance {distance})")
    for i, j, correlation in correlated_pairs(thumbnails, min_correlation):
        links.setdefault((i, j), f"near duplicate (thumbnail correlation {correlation:.3f})")
    for i, j, correlation in cropped_pairs(crop_descriptors, min_crop_correlation):
        links.setdefault((i, j), f"near duplicate (re-cropped or rescaled, detail correlation {correlation:.3f})")
    if "origin" in frame:  # documented re-publications (a reader's `origin`): the reason only where pixels found none
        origins = frame["origin"].fillna("").astype(str)
        for i, j in same_value_pairs(origins.where(origins != "")):
            links.setdefault((i, j), f"re-published copy (documented origin {origins.iat[i]})")
    return links


def deduplicate(
    manifest: pd.DataFrame,
    thumbnails: np.ndarray,
    source_order: list[str],
    max_distance: int,
    min_correlation: float,
    crop_descriptors: np.ndarray,
    min_crop_correlation: float,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep one image per cluster of copies (`duplicate_links`); join the patients of a cluster into one group.

    `manifest` needs columns source, path, label, patient_id, sha256, phash; `thumbnails` and `crop_descriptors`
    are aligned with its rows. Returns the kept rows with a `group_id` column, and the drops (source, item, reason).
    """
    rank = {source: i for i, source in enumerate(source_order)}
    order = np.lexsort((manifest["path"].to_numpy(), manifest["source"].map(rank).to_numpy()))
    frame = manifest.iloc[order].reset_index(drop=True)
    distance_to = duplicate_links(
        frame, thumbnails[order], max_distance, min_correlation, crop_descriptors[order], min_crop_correlation
    )
    images = DisjointSet(range(len(frame)))
    for i, j in distance_to:
        images.merge(i, j)

    patients = DisjointSet(sorted(set(frame["patient_id"])))
    keep, drops = [], []
    for members in sorted(sorted(cluster) for cluster in images.subsets()):
        kept = members[0]  # lowest source rank, then path: the frame is sorted that way
        keep.append(kept)
        for other in members[1:]:
            patients.merge(frame.at[kept, "patient_id"], frame.at[other, "patient_id"])
            kind = (
                distance_to.get((kept, other))
                or distance_to.get((other, kept))
                or "near duplicate (via a chain of copies)"
            )
            reason = f"{kind} of {frame.at[kept, 'source']}:{display_path(frame.at[kept, 'path'])}"
            if frame.at[other, "label"] != frame.at[kept, "label"]:
                reason += f" (label conflict: kept {frame.at[kept, 'label']}, dropped {frame.at[other, 'label']})"
            drops.append(
                {"source": frame.at[other, "source"], "item": display_path(frame.at[other, "path"]), "reason": reason}
            )

    kept = frame.loc[sorted(keep)].copy()
    # A group is named after its smallest patient id, so the name does not depend on the order copies were joined.
    group_of = {patient: min(group) for group in patients.subsets() for patient in group}
    kept["group_id"] = kept["patient_id"].map(group_of)
    return kept.reset_index(drop=True), pd.DataFrame(drops, columns=["source", "item", "reason"])


def same_value_pairs(values: pd.Series) -> Iterator[tuple[int, int]]:
    """(first row, row) for every later row with the value of an earlier one; missing values match nothing."""
    first: dict[str, int] = {}
    for index, sha in enumerate(values):
        if pd.isna(sha):
            continue
        if sha in first:
            yield first[sha], index
        else:
            first[sha] = index
