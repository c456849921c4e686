"""Ingest: read every configured source, hash and decode each image once, and deduplicate.

The result is the manifest (one row per kept image) and the drop report (one row per image or
metadata row left out, with its reason). Nothing is skipped silently.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import DataConfig, ValidationConfig
from ..sources import DROP_COLUMNS, READERS, SourceError
from ..sources.base import display_path
from .cache import ImageCache
from .dedup import deduplicate
from .describe import describe_all
from .descriptors import CROP_SIDE, THUMBNAIL_SIDE

log = logging.getLogger(__name__)


class IngestError(ValueError):
    """A configured source that cannot be read at all."""


def read_sources(data: DataConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Candidate rows and reader drops from every source in `data.sources`."""
    rows, drops = [], []
    for source in data.sources:
        reader = READERS.get(source.reader)
        if reader is None:
            raise IngestError(f"source {source.label!r}: unknown reader {source.reader!r}; known: {sorted(READERS)}")
        folder = Path(data.root) / source.path
        try:
            scan = reader(folder, source.label, **source.reader_options())
        except SourceError as error:
            hint = " (run `covid-xray data fetch` to materialize data/raw?)" if "not found" in str(error) else ""
            raise IngestError(f"source {source.label!r}: {error}{hint}") from None
        found, dropped = scan.frames()
        if found.empty:
            dropped = pd.concat(
                [
                    dropped,
                    pd.DataFrame(
                        [{"source": source.label, "item": str(folder), "reason": "no usable images in source"}]
                    ),
                ]
            )
        rows.append(found)
        drops.append(dropped)
    return pd.concat(rows, ignore_index=True), pd.concat(drops, ignore_index=True)


def ingest(data: DataConfig, validation: ValidationConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read, filter by class, hash, decode (cached) and deduplicate all sources."""
    candidates, drops = read_sources(data)
    drops = [drops]
    cache = ImageCache.for_data(data, validation.min_side)
    decoded: list[dict] = []
    failed: list[dict] = []
    from_cache = 0
    started = time.perf_counter()
    rows = candidates.to_dict("records")
    # Filled in place, one row per decoded image: a list of small arrays stacked afterwards would hold them twice.
    thumbnails = np.empty((len(rows), THUMBNAIL_SIDE * THUMBNAIL_SIDE), np.float32)
    descriptors = np.empty((len(rows), CROP_SIDE, CROP_SIDE), np.uint8)
    for row, image in zip(rows, describe_all(cache, [row["path"] for row in rows], data.workers), strict=True):
        if isinstance(image, str):
            failed.append({**row, "reason": image})
            continue
        thumbnails[len(decoded)] = image.thumbnail
        descriptors[len(decoded)] = image.crop_descriptor
        decoded.append(
            {**row, "sha256": image.sha256, "phash": image.phash, "width": image.width, "height": image.height}
        )
        from_cache += image.from_cache
    seconds = {"decode": time.perf_counter() - started, "dedup": 0.0, "dedup_cpu": 0.0}
    log.info(
        "decoded %d images in %.1f s (%d from cache, %d decoded now, %d unusable)",
        len(decoded),
        seconds["decode"],
        from_cache,
        len(decoded) - from_cache,
        len(failed),
    )
    drops.append(_drops(pd.DataFrame(failed, columns=[*candidates.columns, "reason"]), lambda r: r["reason"]))

    manifest = pd.DataFrame(decoded, columns=[*candidates.columns, "sha256", "phash", "width", "height"])
    if not manifest.empty:
        # Deduplicate before filtering classes: a 'covid' copy of a picture labelled pneumonia elsewhere is label
        # noise, and must go with it rather than survive because its twin was filtered out first.
        started, cpu = time.perf_counter(), time.process_time()
        manifest, duplicate_drops = deduplicate(
            manifest,
            thumbnails[: len(decoded)],
            [s.label for s in data.sources],
            data.near_duplicate_max_distance,
            data.near_duplicate_min_correlation,
            descriptors[: len(decoded)],
            data.near_duplicate_min_crop_correlation,
        )
        seconds["dedup"], seconds["dedup_cpu"] = time.perf_counter() - started, time.process_time() - cpu
        log.info("deduplicated %d images in %.1f s", len(decoded), seconds["dedup"])
        drops.append(duplicate_drops)
    wanted = manifest["label"].isin(data.findings)
    drops.append(_drops(manifest[~wanted], lambda r: f"label {r['label']!r} not in classes {data.findings}"))
    manifest = manifest[wanted].reset_index(drop=True).assign(cache_key=cache.key)
    manifest.attrs["seconds"] = (
        seconds  # wall time of decoding (and hashing) and of deduplication, and dedup's CPU time
    )
    return manifest, pd.concat(drops, ignore_index=True)[DROP_COLUMNS]


def _drops(rows: pd.DataFrame, reason) -> pd.DataFrame:
    if rows.empty:
        return pd.DataFrame(columns=DROP_COLUMNS)
    return pd.DataFrame(
        {"source": rows["source"], "item": rows["path"].map(display_path), "reason": rows.apply(reason, axis=1)}
    )


def reason_kinds(reasons: pd.Series) -> pd.Series:
    """The kind of each drop reason: its text before any file-specific detail."""
    return reasons.str.replace(r"( of | \(|: ).*$", "", regex=True)


def drop_summary(drops: pd.DataFrame) -> pd.DataFrame:
    """Drops counted by source and reason kind (`reason_kinds`)."""
    return (
        drops.assign(reason=reason_kinds(drops["reason"]))
        .groupby(["source", "reason"])
        .size()
        .rename("count")
        .reset_index()
    )
