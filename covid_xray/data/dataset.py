"""From the deduplicated manifest to splits: split, rebalance, and each split by reference to the cached pixels."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..config import RunConfig
from ..labels import as_outputs
from .cache import ImageCache
from .rebalance import composition, cramers_v, rebalance
from .split import patient_split
from .stream import Split


@dataclass
class PreparedData:
    manifest: pd.DataFrame  # every kept image, with its split
    train_rows: pd.DataFrame  # the rebalanced training rows (may repeat rows when oversampling)
    composition_before: pd.DataFrame
    composition_after: pd.DataFrame
    cramers_v_before: float
    cramers_v_after: float


def prepare(manifest: pd.DataFrame, config: RunConfig) -> PreparedData:
    split = patient_split(manifest, config.split)
    train = split[split["split"] == "train"]
    balanced = rebalance(train, config.rebalance)
    return PreparedData(
        split, balanced, composition(train), composition(balanced), cramers_v(train), cramers_v(balanced)
    )


def image_cache(config: RunConfig) -> ImageCache:
    return ImageCache.for_data(config.data, config.validation.min_side)


def split_of(rows: pd.DataFrame, config: RunConfig) -> Split:
    """`rows` by reference: content keys, class indices, sources and patient groups, and the run's image cache, which
    must hold every row's pixels (ingest fills it); the pixels stay there until training or evaluation streams them."""
    index = {c: i for i, c in enumerate(config.classes)}
    labels = np.asarray([index[t] for t in as_outputs(rows["label"], config.classes)], np.int32)
    groups = rows["group_id"].to_numpy(dtype=str) if "group_id" in rows else None
    cache = image_cache(config)
    findings = rows["label"].to_numpy(dtype=str)
    split = Split(list(rows["sha256"]), labels, cache.ref(), rows["source"].to_numpy(dtype=str), groups, findings)
    missing = split.missing()
    if missing:
        raise ValueError(
            f"{len(missing)} of {len(split)} images are not in the image cache {cache.folder} (first: "
            f"{missing[0]}): run ingest with the same data settings to fill it"
        )
    return split


def manifest_hash(manifest: pd.DataFrame) -> str:
    """Short content hash of the dataset: which images, with which labels, in which split."""
    columns = [c for c in ("sha256", "label", "split") if c in manifest]
    text = manifest[columns].sort_values(columns).to_csv(index=False)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
