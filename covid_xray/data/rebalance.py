"""Rebalancing of the training split, and how strongly source and label are confounded.

A dataset where the source predicts the label lets a model learn the hospital instead of the
disease. Per-source caps limit any one source's share of a class; the class strategy then
undersamples, oversamples or weights classes. Cramér's V between source and label is reported
before and after.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats.contingency import association
from sklearn.utils.class_weight import compute_class_weight

from ..config import RebalanceConfig


def composition(frame: pd.DataFrame) -> pd.DataFrame:
    """Source × label counts, with totals."""
    return pd.crosstab(frame["source"], frame["label"], margins=True, margins_name="total")


def cramers_v(frame: pd.DataFrame) -> float:
    """Association between source and label, 0 (none) to 1 (the source gives the label away)."""
    table = pd.crosstab(frame["source"], frame["label"])
    if table.shape[0] < 2 or table.shape[1] < 2:
        return 0.0
    return float(association(table.to_numpy(), method="cramer"))


def cap_source_share(frame: pd.DataFrame, max_share: float, seed: int) -> pd.DataFrame:
    """Downsample sources whose share of a class exceeds `max_share` (when the class has other sources)."""
    if max_share >= 1.0:
        return frame
    rng = np.random.default_rng(seed)
    kept = []
    for _, rows in frame.groupby("label", sort=True):
        counts = rows["source"].value_counts()
        if len(counts) < 2:
            kept.append(rows)
            continue
        for source, count in counts.items():
            others = len(rows) - count
            # largest n with n / (n + others) <= max_share
            limit = max(1, int(np.floor(max_share * others / (1 - max_share)))) if max_share < 1 else count
            part = rows[rows["source"] == source]
            if count > limit:
                part = part.iloc[np.sort(rng.choice(count, size=limit, replace=False))]
            kept.append(part)
    return pd.concat(kept).sort_index()


def rebalance(train: pd.DataFrame, config: RebalanceConfig) -> pd.DataFrame:
    """The rebalanced training rows (undersampled or oversampled with repeated rows)."""
    frame = cap_source_share(train, config.max_source_share, config.seed)
    counts = frame["label"].value_counts()
    rng = np.random.default_rng(config.seed)
    if config.strategy == "undersample":
        target = int(counts.min())
        parts = [
            rows.iloc[np.sort(rng.choice(len(rows), size=target, replace=False))]
            for _, rows in frame.groupby("label", sort=True)
        ]
        return pd.concat(parts).sort_index()
    if config.strategy == "oversample":
        target = int(counts.max())
        parts = [
            pd.concat([rows, rows.iloc[rng.choice(len(rows), size=target - len(rows), replace=True)]])
            for _, rows in frame.groupby("label", sort=True)
        ]
        return pd.concat(parts)
    return frame


def class_weights(labels: np.ndarray, n_classes: int, strategy: str) -> dict[int, float] | None:
    """Keras class_weight for the 'class_weight' strategy ('balanced' weights), else None."""
    if strategy != "class_weight":
        return None
    present = np.unique(labels)
    weights = compute_class_weight("balanced", classes=present, y=labels)
    return {int(c): float(w) for c, w in zip(present, weights, strict=True)} | {
        c: 1.0 for c in range(n_classes) if c not in present
    }
