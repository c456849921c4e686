"""Results by subgroup: view, sex and age band, each group with its patient-group intervals (TRIPOD+AI 3c, CLAIM).

A group is reported whatever its size. Below `MIN_PATIENTS` patients, or with one class only, its numbers are shown
with the note "too small for an interval" and no interval: a bootstrap over a handful of patients says nothing, and
hiding the group would hide that the test split barely covers it. Groups come from the manifest: `view`, `sex`
("unknown" where the source does not say) and `age` (years, banded; "unknown" where missing).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .metrics import covid_metrics

ATTRIBUTES = ("view", "sex", "age_band")
AGE_BANDS = ((0, 18, "0-17"), (18, 40, "18-39"), (40, 60, "40-59"), (60, 80, "60-79"), (80, 200, "80+"))
MIN_PATIENTS = 10
SHOWN = ("accuracy", "sensitivity", "specificity", "roc_auc")


def age_band(age: float) -> str:
    """The band of an age in years ('40-59'), or 'unknown'."""
    if age is None or not math.isfinite(age):
        return "unknown"
    return next(name for low, high, name in AGE_BANDS if low <= age < high)


def subgroup_metrics(
    frame: pd.DataFrame, proba: np.ndarray, classes: Sequence[str], threshold: float = 0.5
) -> pd.DataFrame:
    """One row per (attribute, group) of the test rows in `frame` (columns label, group_id, and view, sex, age where
    known; rows aligned with `proba`): n, patients, covid cases, the metrics of SHOWN at `threshold` with their
    patient-group intervals, and a note for a group too small for an interval."""
    frame = frame.reset_index(drop=True)
    columns = {
        "view": frame.get("view", pd.Series("unknown", index=frame.index)).fillna("unknown").astype(str),
        "sex": frame.get("sex", pd.Series("unknown", index=frame.index)).fillna("unknown").astype(str),
        "age_band": frame.get("age", pd.Series(np.nan, index=frame.index)).astype(float).map(age_band),
    }
    labels, groups = frame["label"].to_numpy(), frame["group_id"].to_numpy()
    rows = []
    for attribute in ATTRIBUTES:
        values = columns[attribute].to_numpy()
        for group in sorted(set(values)):
            mask = values == group
            metrics = covid_metrics(labels[mask], proba[mask], classes, groups[mask], threshold)
            patients, both = int(metrics["n_groups"]), 0 < metrics["n_covid"] < metrics["n"]
            small = patients < MIN_PATIENTS or not both
            row: dict[str, object] = {
                "attribute": attribute,
                "group": group,
                "n": int(metrics["n"]),
                "patients": patients,
                "n_covid": int(metrics["n_covid"]),
            }
            for name in SHOWN:
                row[name] = metrics[name]
                low, high = metrics[f"{name}_ci_low"], metrics[f"{name}_ci_high"]
                row[f"{name}_ci_low"], row[f"{name}_ci_high"] = (math.nan, math.nan) if small else (low, high)
            counted = f"{patients} patient{'' if patients == 1 else 's'}{'' if both else ', one class'}"
            row["note"] = f"too small for an interval ({counted})" if small else ""
            rows.append(row)
    return pd.DataFrame(rows)


def subgroup_table(table: pd.DataFrame) -> str:
    """The subgroup results as Markdown: value [interval] per metric, the note where there is no interval."""
    lines = [
        "| attribute | group | images | patients | covid | " + " | ".join(SHOWN) + " | note |",
        "|---|---|---|---|---|" + "---|" * len(SHOWN) + "---|",
    ]
    for row in table.to_dict("records"):
        cells = []
        for name in SHOWN:
            value, low, high = row[name], row[f"{name}_ci_low"], row[f"{name}_ci_high"]
            if not math.isfinite(value):
                cells.append("–")
            elif math.isfinite(low):
                cells.append(f"{value:.3f} [{low:.2f}, {high:.2f}]")
            else:
                cells.append(f"{value:.3f}")
        lines.append(
            f"| {row['attribute']} | {row['group']} | {row['n']} | {row['patients']} | {row['n_covid']} | "
            + " | ".join(cells)
            + f" | {row['note'] if isinstance(row['note'], str) else ''} |"
        )
    return "\n".join(lines)
