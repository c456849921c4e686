"""From the deduplicated manifest to training arrays: split, rebalance, load cached pixels."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .config import RunConfig
from .images import ImageCache
from .rebalance import composition, cramers_v, rebalance
from .split import patient_split
from .training import Split


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
    return PreparedData(split, balanced, composition(train), composition(balanced),
                        cramers_v(train), cramers_v(balanced))  # fmt: skip


def image_cache(config: RunConfig) -> ImageCache:
    return ImageCache.for_data(config.data, config.validation.min_side)


def load_split(rows: pd.DataFrame, config: RunConfig) -> Split:
    """Pixels (from the image cache), class indices, content keys and sources of `rows`."""
    labels = rows["label"].map({c: i for i, c in enumerate(config.data.classes)}).to_numpy(np.int32)
    keys = list(rows["sha256"])
    return Split(image_cache(config).stack(keys), labels, keys, rows["source"].to_numpy(dtype=str))


def manifest_hash(manifest: pd.DataFrame) -> str:
    """Short content hash of the dataset: which images, with which labels, in which split."""
    columns = [c for c in ("sha256", "label", "split") if c in manifest]
    text = manifest[columns].sort_values(columns).to_csv(index=False)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
