"""How a registered model does at a user's own site: `covid-xray evaluate SITE`'s numbers and report.

SITE is a folder of class folders (`<site>/<class>/<image>`, the `folder` reader) or a CSV list (`path`, `label`,
optionally `patient_id`, `view`, `sex`, `age`: the `csv` reader). The model answers every image through its own
transform; from its calibrated covid probabilities this module computes, without MLflow or Keras:
  - the metrics at the model's recorded threshold, with 95% patient-group intervals;
  - calibration at this site (expected calibration error, Brier score, the reliability curve);
  - the threshold re-chosen at the site: Youden's rule on a patient-level half, both thresholds scored on the other
    half, so the change is measured on images the new threshold did not see;
  - the out-of-distribution flag rate (where the model has an OOD record);
  - the subgroup table (view, sex, age band).
`write_report` writes them as report.json and a self-contained report.html.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.model_selection import GroupShuffleSplit

from ..labels import POSITIVE
from ..sources import READERS
from ..sources.base import SourceError
from .calibration import reliability
from .metrics import covid_metrics
from .operating_point import youden_threshold
from .subgroups import subgroup_metrics, subgroup_table

SHOWN = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "ppv", "npv", "roc_auc")


def site_rows(site: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(labelled rows, drops) of a site: a class-folder tree or a CSV list, read by the project's own readers."""
    if site.is_dir():
        scan = READERS["folder"](site, source="site")
    elif site.suffix.lower() == ".csv" and site.is_file():
        scan = READERS["csv"](site.parent, source="site", csv_file=site.name)
    else:
        raise SourceError(f"{site}: a site is a folder of class folders or a .csv list (path, label, ...)")
    return scan.frames()


def proba_matrix(covid_probability: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Two-class probabilities (covid and the other class) from the covid probability, in `classes` order."""
    if len(classes) != 2:
        raise ValueError(f"site evaluation scores covid against one other class; this model has {list(classes)}")
    p = np.asarray(covid_probability, dtype=np.float64)
    return np.column_stack([p, 1 - p]) if classes.index(POSITIVE) == 0 else np.column_stack([1 - p, p])


def threshold_at_site(
    labels: np.ndarray, proba: np.ndarray, classes: Sequence[str], groups: np.ndarray, recorded: float, seed: int = 0
) -> dict:
    """Youden's threshold chosen on a patient-level half of the site, and both thresholds scored on the other half."""
    y = np.asarray(labels) == POSITIVE
    if len(np.unique(groups)) < 4 or len(np.unique(y)) < 2:
        return {"note": "too few patients or one class only: no threshold can be chosen at this site"}
    for attempt in range(20):  # a half with one class cannot choose a threshold: draw another split
        choose, check = next(
            GroupShuffleSplit(n_splits=1, test_size=0.5, random_state=seed + attempt).split(y, y, groups)
        )
        if len(np.unique(y[choose])) == 2 and len(np.unique(y[check])) == 2:
            break
    else:
        return {"note": "no patient-level half with both classes: no threshold can be chosen at this site"}
    positive = list(classes).index(POSITIVE)
    chosen = youden_threshold(y[choose], proba[choose, positive])
    scored = {
        name: covid_metrics(labels[check], proba[check], classes, groups[check], threshold)
        for name, threshold in (("recorded", recorded), ("site", chosen))
    }
    return {
        "recorded_threshold": recorded,
        "site_threshold": chosen,
        "chosen_on": {"images": int(len(choose)), "patients": int(len(np.unique(groups[choose])))},
        "scored_on": {"images": int(len(check)), "patients": int(len(np.unique(groups[check])))},
        "at_recorded": _shown(scored["recorded"]),
        "at_site": _shown(scored["site"]),
    }


def _shown(metrics: dict[str, float]) -> dict[str, float]:
    keys = [k for name in SHOWN for k in (name, f"{name}_ci_low", f"{name}_ci_high")]
    return {k: metrics[k] for k in ["n", "n_covid", "n_groups", *keys] if k in metrics}


def site_report(
    rows: pd.DataFrame,
    covid_probability: np.ndarray,
    flagged: np.ndarray | None,
    classes: Sequence[str],
    threshold: float,
    model: str,
    refused: dict[str, str],
    drops: pd.DataFrame,
) -> dict:
    """Everything the report shows, as plain JSON-ready values. `rows` are the answered images (label, patient_id and
    the subgroup columns), aligned with `covid_probability` and `flagged`; `refused` maps the images the model's
    checks refused to the reason; `drops` are the reader's drops."""
    labels = rows["label"].to_numpy()
    groups = rows["patient_id"].to_numpy()
    proba = proba_matrix(covid_probability, classes)
    y = labels == POSITIVE
    observed, predicted = (
        calibration_curve(y, proba[:, list(classes).index(POSITIVE)], n_bins=10) if len(np.unique(y)) == 2 else ([], [])
    )
    frame = rows.assign(group_id=groups)
    return {
        "model": model,
        "images": {
            "answered": int(len(rows)),
            "refused_by_the_model": len(refused),
            "dropped_by_the_reader": int(len(drops)),
            "patients": int(len(np.unique(groups))),
            "covid": int(y.sum()),
        },
        "at_recorded_threshold": {
            "threshold": threshold,
            **_shown(covid_metrics(labels, proba, classes, groups, threshold)),
        },
        "calibration": {
            **reliability(labels, proba, classes),
            "curve": {"predicted": [float(v) for v in predicted], "observed": [float(v) for v in observed]},
        },
        "threshold_at_site": threshold_at_site(labels, proba, classes, groups, threshold),
        "out_of_distribution_rate": None if flagged is None else float(np.mean(flagged)) if len(flagged) else None,
        "subgroups": subgroup_metrics(frame, proba, classes, threshold).to_dict("records"),
        "refused": [{"path": path, "reason": reason} for path, reason in refused.items()],
        "dropped": drops.to_dict("records"),
    }


def _cell(value) -> str:
    if isinstance(value, float):
        return "–" if not math.isfinite(value) else f"{value:.3f}"
    return html.escape(str(value))


def _metrics_html(metrics: dict) -> str:
    rows = []
    for name in SHOWN:
        if name not in metrics:
            continue
        value, low, high = metrics[name], metrics.get(f"{name}_ci_low"), metrics.get(f"{name}_ci_high")
        interval = f" [{low:.2f}, {high:.2f}]" if low is not None and math.isfinite(low) else ""
        rows.append(f"<tr><td>{name}</td><td>{_cell(value)}{interval}</td></tr>")
    return "<table><tr><th>metric</th><th>value [95% patient-group interval]</th></tr>" + "".join(rows) + "</table>"


def report_html(report: dict) -> str:
    """A self-contained HTML page of `site_report`'s result."""
    images, recorded, calibration = report["images"], report["at_recorded_threshold"], report["calibration"]
    site = report["threshold_at_site"]
    ood = report["out_of_distribution_rate"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Site evaluation</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}</style></head><body>",
        f"<h1>Site evaluation of {html.escape(report['model'])}</h1>",
        f"<p>{images['answered']} images of {images['patients']} patients answered ({images['covid']} covid); "
        f"{images['refused_by_the_model']} refused by the model's checks, {images['dropped_by_the_reader']} "
        "dropped by the reader (listed at the end).</p>",
        f"<h2>At the model's recorded threshold ({recorded['threshold']:.3f})</h2>",
        _metrics_html(recorded),
        "<h2>Calibration at this site</h2>",
        f"<p>Expected calibration error {_cell(calibration['ece'])}, Brier score {_cell(calibration['brier'])}.</p>",
        "<table><tr><th>mean predicted covid probability (bin)</th><th>observed covid rate</th></tr>"
        + "".join(
            f"<tr><td>{p:.2f}</td><td>{o:.2f}</td></tr>"
            for p, o in zip(calibration["curve"]["predicted"], calibration["curve"]["observed"], strict=True)
        )
        + "</table>",
        "<h2>A threshold for this site</h2>",
    ]
    if "note" in site:
        parts.append(f"<p>{html.escape(site['note'])}</p>")
    else:
        parts += [
            f"<p>Youden's rule on a patient-level half ({site['chosen_on']['patients']} patients) chooses "
            f"{site['site_threshold']:.3f} instead of {site['recorded_threshold']:.3f}. Both, scored on the other "
            f"half ({site['scored_on']['patients']} patients):</p>",
            "<h3>Recorded threshold</h3>",
            _metrics_html(site["at_recorded"]),
            "<h3>Threshold chosen at this site</h3>",
            _metrics_html(site["at_site"]),
        ]
    parts.append(
        "<h2>Out of distribution</h2><p>"
        + ("The model has no out-of-distribution record." if ood is None else f"{ood:.1%} of the images flagged.")
        + "</p>"
    )
    subgroups = pd.DataFrame(report["subgroups"])
    parts += ["<h2>Subgroups</h2><pre>", html.escape(subgroup_table(subgroups)) if len(subgroups) else "", "</pre>"]
    left_out = [(r["path"], r["reason"]) for r in report["refused"]] + [
        (r["item"], r["reason"]) for r in report["dropped"]
    ]
    parts.append("<h2>Left out</h2>")
    parts.append(
        "<table><tr><th>image</th><th>reason</th></tr>"
        + "".join(f"<tr><td>{html.escape(str(p))}</td><td>{html.escape(str(r))}</td></tr>" for p, r in left_out)
        + "</table></body></html>"
        if left_out
        else "<p>None.</p></body></html>"
    )
    return "\n".join(parts)


def write_report(report: dict, folder: Path) -> tuple[Path, Path]:
    """report.json and report.html in `folder` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path, html_path = folder / "report.json", folder / "report.html"
    json_path.write_text(json.dumps(_finite(report), indent=2, allow_nan=False) + "\n")
    html_path.write_text(report_html(report))
    return json_path, html_path


def _finite(value):
    """`value` with NumPy scalars as Python ones and NaN or infinite numbers as None (strict JSON)."""
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
