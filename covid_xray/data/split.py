"""Patient-level, stratified train/validation/test split.

Groups (patients, joined when they shared a picture; see dedup) never cross splits. Stratifying on
source × label keeps every source's classes represented in each split where the counts allow.
"""

from __future__ import annotations

import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from ..config import SplitConfig

SPLITS = ("train", "val", "test")


def held_out_share(fraction: float) -> float:
    """The share `hold_out_groups` really holds out for `fraction`: one fold of round(1 / fraction), at least two."""
    return 1 / max(2, round(1 / fraction))


def hold_out_groups(frame: pd.DataFrame, fraction: float, seed: int) -> pd.Series:
    """A boolean mask selecting about `fraction` of `frame` by whole groups, stratified by source × label."""
    n_splits = round(1 / held_out_share(fraction))
    strata = frame["source"] + "|" + frame["label"]
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    _, held = next(folds.split(frame, strata, groups=frame["group_id"]))
    mask = pd.Series(False, index=frame.index)
    mask.iloc[held] = True
    return mask


def patient_split(manifest: pd.DataFrame, config: SplitConfig) -> pd.DataFrame:
    """The manifest with a `split` column in {train, val, test}; needs source, label and group_id columns."""
    frame = manifest.copy()
    test = hold_out_groups(frame, config.test_fraction, config.seed)
    rest = frame[~test]
    val = hold_out_groups(rest, config.val_fraction / (1 - config.test_fraction), config.seed + 1)
    frame["split"] = "train"
    frame.loc[test[test].index, "split"] = "test"
    frame.loc[val[val].index, "split"] = "val"
    return frame


def crossing_groups(frame: pd.DataFrame) -> list[str]:
    """Groups found in more than one split (must be empty)."""
    splits_per_group = frame.groupby("group_id")["split"].nunique()
    return sorted(splits_per_group[splits_per_group > 1].index)
