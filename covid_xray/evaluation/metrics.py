"""COVID-vs-rest metrics with 95% confidence intervals, per source, and the plots that show them.

Images of one patient are not independent, so every interval is a cluster bootstrap over patient groups
(`<m>_ci_low/_ci_high`): whole groups are drawn with replacement and each metric is recomputed from the
resample's confusion counts. Proportions also keep their Wilson interval (`<m>_wilson_low/_wilson_high`),
which is right only where one image is one patient, and their `_ci_` interval is never narrower than it.
The class decision is `decision.predict_labels` at the operating point's threshold; everything else is
scikit-learn and SciPy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import binomtest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, confusion_matrix, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..labels import POSITIVE, as_outputs
from .decision import predict_labels

# A model whose p(covid) over the test images has a smaller standard deviation answers the same whatever the image
# (the gate refuses it): a source-adversarial game can end there, since a constant output hides the source perfectly.
MIN_SCORE_SD = 0.01
PROPORTIONS = ("accuracy", "sensitivity", "specificity", "ppv", "npv")
COUNT_METRICS = (*PROPORTIONS, "balanced_accuracy", "f1")


def wilson(successes: int, total: int) -> tuple[float, float, float]:
    """Point estimate and 95% Wilson interval of successes / total (nan when total is 0)."""
    if total == 0:
        return math.nan, math.nan, math.nan
    interval = binomtest(int(successes), int(total)).proportion_ci(confidence_level=0.95, method="wilson")
    return successes / total, float(interval.low), float(interval.high)


def _group_codes(groups: np.ndarray) -> np.ndarray:
    return np.unique(np.asarray(groups), return_inverse=True)[1].reshape(-1)


def group_bootstrap_indices(groups: np.ndarray, n: int = 1000, seed: int = 0) -> list[np.ndarray]:
    """`n` cluster-bootstrap resamples of row indices: whole groups (patients) drawn with replacement.

    Images of one patient are not independent; resampling patients, not images, gives intervals that
    reflect how many patients a number rests on. Each resample is an index array into the rows."""
    groups = np.asarray(groups)
    if len(groups) == 0:
        return [np.zeros(0, int) for _ in range(n)]
    codes = _group_codes(groups)
    order = np.argsort(codes, kind="stable")
    starts = np.searchsorted(codes[order], np.arange(codes.max() + 1))
    members = np.split(order, starts[1:])
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(members), (n, len(members)))
    return [np.concatenate([members[g] for g in draw]) for draw in draws]


def group_resample_counts(groups: np.ndarray, n: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The resamples of `group_bootstrap_indices` (same seed, same draws) as counts: (codes, R).

    `codes[i]` is row i's group and `R[b, g]` how often group g is drawn in resample b, so any sum over the
    rows of a resample is `R @ per-group sums`: all resamples at once, without building index arrays."""
    codes = _group_codes(groups)
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    draws = np.random.default_rng(seed).integers(0, max(n_groups, 1), (n, n_groups))
    offsets = (draws + np.arange(n)[:, None] * n_groups).reshape(-1)
    return codes, np.bincount(offsets, minlength=n * n_groups).reshape(n, n_groups).astype(np.float64)


def _count_metrics(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Count metrics from confusion counts (..., 6): nan where a metric's denominator is zero."""
    tp, fn, tn, fp, correct, total = np.moveaxis(np.asarray(counts, dtype=np.float64), -1, 0)

    def ratio(a, b):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)

    sensitivity, specificity = ratio(tp, tp + fn), ratio(tn, tn + fp)
    return {
        "accuracy": ratio(correct, total),
        "sensitivity": sensitivity,
        "specificity": specificity,
        "ppv": ratio(tp, tp + fp),
        "npv": ratio(tn, tn + fn),
        "balanced_accuracy": (sensitivity + specificity) / 2,
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
    }


def _confusion_rows(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Per-image confusion indicators (n, 6): tp, fn, tn, fp, correct, 1, all covid vs rest (a three-class model's
    other classes have their own recall in `per_class_metrics`)."""
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    y, y_hat = labels == POSITIVE, predicted == POSITIVE
    return np.stack([y & y_hat, y & ~y_hat, ~y & ~y_hat, ~y & y_hat, y == y_hat, np.ones(len(y), bool)], 1)


def _per_group(values: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Sums of `values` (n, k) per group: (n_groups, k)."""
    out = np.zeros((n_groups, values.shape[1]))
    np.add.at(out, codes, values)
    return out


def percentile_interval(samples: np.ndarray) -> tuple[float, float]:
    """The 95% percentile interval of the finite bootstrap samples (nan, nan when there are none).

    Resamples where a metric is undefined (e.g. no covid patient drawn for sensitivity) are left out."""
    samples = np.asarray(samples, dtype=np.float64)
    samples = samples[np.isfinite(samples)]
    if len(samples) == 0:
        return math.nan, math.nan
    low, high = np.percentile(samples, [2.5, 97.5])
    return float(low), float(high)


def resampled_auc(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC of each resample, given how often each row is drawn: `weights` (n_resamples, n_rows).

    The Mann-Whitney U statistic from midranks, as roc_auc_score computes it (ties count one half): a row
    drawn w times is w tied copies, so the midrank of a block of equal scores is the weight below it plus
    (the block's weight + 1) / 2. Nan where a resample lacks a class."""
    y = np.asarray(y, dtype=bool)
    order = np.argsort(np.asarray(score, dtype=np.float64), kind="stable")
    sorted_scores = np.asarray(score, dtype=np.float64)[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    w = np.asarray(weights, dtype=np.float64)[:, order]
    block = np.add.reduceat(w, starts, axis=1)
    block_positive = np.add.reduceat(w * y[order], starts, axis=1)
    below = np.cumsum(block, axis=1) - block
    n_pos = block_positive.sum(axis=1)
    n_neg = block.sum(axis=1) - n_pos
    u = (block_positive * (below + (block + 1) / 2)).sum(axis=1) - n_pos * (n_pos + 1) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)


def bootstrap_auc(
    y: np.ndarray, score: np.ndarray, n: int = 1000, seed: int = 0, groups: np.ndarray | None = None
) -> tuple[float, float, float]:
    """ROC AUC with a 95% percentile bootstrap interval over `n` resamples of the patient groups.

    Without `groups` every image is its own group. All resamples at once (see resampled_auc): 1000 calls
    of roc_auc_score took 2.6 s per evaluation."""
    y = np.asarray(y, dtype=bool)
    if len(np.unique(y)) < 2:
        return math.nan, math.nan, math.nan
    codes, counts = group_resample_counts(np.arange(len(y)) if groups is None else groups, n, seed)
    low, high = percentile_interval(resampled_auc(y, score, counts[:, codes]))
    return float(roc_auc_score(y, score)), low, high


def group_bootstrap_samples(
    labels: np.ndarray,
    predicted: np.ndarray,
    groups: np.ndarray,
    score: np.ndarray | None = None,
    n: int = 1000,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Each count metric (and ROC AUC of `score`, when given) on each of `n` patient-group resamples.

    The resamples are `group_bootstrap_indices(groups, n, seed)`'s; values are nan where a resample leaves a
    metric undefined (e.g. no covid patient drawn, for sensitivity)."""
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    codes, counts = group_resample_counts(groups, n, seed)
    if len(codes) != len(labels) or len(predicted) != len(labels):
        raise ValueError(f"groups has {len(codes)} entries and predicted {len(predicted)} for {len(labels)} labels")
    samples = _count_metrics(counts @ _per_group(_confusion_rows(labels, predicted), codes, counts.shape[1]))
    if score is not None:
        samples["roc_auc"] = resampled_auc(labels == POSITIVE, score, counts[:, codes])
    return samples


def covid_metrics(
    labels: list[str] | np.ndarray,
    proba: np.ndarray,
    classes: Sequence[str],
    groups: np.ndarray | None = None,
    threshold: float = 0.5,
    n: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """Flat dict of covid-vs-rest metrics at `threshold` (covid is the positive class) with 95% intervals.

    `proba` are the (calibrated) probabilities the threshold applies to; classes come from
    `decision.predict_labels`. `<m>_ci_low/_ci_high` is the percentile interval of the cluster bootstrap over
    `groups` (patients; without groups each image counts as its own patient), `n` resamples, for every count
    metric and ROC AUC. A bootstrap cannot see the uncertainty of a proportion of 0 or 1 (every resample of 4 of
    4 is 4 of 4), so a proportion's interval is widened to cover its Wilson interval, also logged on its own as
    `<m>_wilson_low/_wilson_high`. Brier has no interval."""
    labels = np.asarray(labels)
    proba = np.asarray(proba, dtype=np.float64)
    predicted = predict_labels(proba, classes, threshold)
    y = labels == POSITIVE
    score = proba[:, classes.index(POSITIVE)]
    groups = np.arange(len(labels)) if groups is None else np.asarray(groups)
    tp, fn, tn, fp, correct, total = (int(t) for t in _confusion_rows(labels, predicted).sum(axis=0))
    point = _count_metrics(np.array([tp, fn, tn, fp, correct, total]))
    both = len(np.unique(y)) == 2
    samples = group_bootstrap_samples(labels, predicted, groups, score if both else None, n, seed)
    result: dict[str, float] = {
        "n": float(len(labels)),
        "n_covid": float(y.sum()),
        "n_groups": float(len(np.unique(groups))),
    }
    for name in COUNT_METRICS:
        result[name] = float(point[name])
        result[f"{name}_ci_low"], result[f"{name}_ci_high"] = percentile_interval(samples[name])
    for name, (k, of) in {
        "accuracy": (correct, total),
        "sensitivity": (tp, tp + fn),
        "specificity": (tn, tn + fp),
        "ppv": (tp, tp + fp),
        "npv": (tn, tn + fn),
    }.items():
        _, low, high = wilson(k, of)
        result[f"{name}_wilson_low"], result[f"{name}_wilson_high"] = low, high
        result[f"{name}_ci_low"] = float(np.fmin(result[f"{name}_ci_low"], low))
        result[f"{name}_ci_high"] = float(np.fmax(result[f"{name}_ci_high"], high))
    result["roc_auc"] = float(roc_auc_score(y, score)) if both else math.nan
    result["roc_auc_ci_low"], result["roc_auc_ci_high"] = (
        percentile_interval(samples["roc_auc"]) if both else (math.nan, math.nan)
    )
    result["brier"] = float(brier_score_loss(y, score)) if len(y) else math.nan
    return result


def per_class_metrics(labels, proba: np.ndarray, classes: Sequence[str], threshold: float = 0.5) -> dict[str, float]:
    """For a model of more than two classes, each class's recall (at `threshold`, decision.predict_labels) and one
    against the rest ROC AUC, as `class.<name>.recall` and `class.<name>.roc_auc`; empty for two classes (the covid
    metrics say it all)."""
    if len(classes) <= 2:
        return {}
    labels, proba = as_outputs(labels, classes), np.asarray(proba, dtype=np.float64)
    predicted = predict_labels(proba, classes, threshold)
    result = {}
    for index, name in enumerate(classes):
        y = labels == name
        result[f"class.{name}.n"] = float(y.sum())
        result[f"class.{name}.recall"] = float((predicted[y] == name).mean()) if y.any() else math.nan
        result[f"class.{name}.roc_auc"] = float(roc_auc_score(y, proba[:, index])) if 0 < y.sum() < len(y) else math.nan
    return result


def count_metric(labels: np.ndarray, predicted: np.ndarray, metric: str) -> float:
    """One count metric of predicted classes against true classes (covid is the positive class); nan if undefined."""
    if metric not in COUNT_METRICS:
        raise ValueError(f"unknown metric {metric!r}; known: {list(COUNT_METRICS)}")
    return float(_count_metrics(_confusion_rows(labels, predicted).sum(0))[metric])


def paired_group_bootstrap(
    y_true: np.ndarray,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    groups: np.ndarray,
    metric: str = "balanced_accuracy",
    n: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float, np.ndarray]:
    """metric(a) - metric(b) on the same images, with a 95% interval that resamples the same patient groups for both.

    `y_true`, `pred_a`, `pred_b` are class names (covid is the positive class), e.g. a candidate's and the
    champion's predictions on one test split. Pairing keeps what the two share (the same hard patients) out of
    the interval of the difference. Returns (delta, low, high, samples): the finite resampled differences."""
    if metric not in COUNT_METRICS:
        raise ValueError(f"unknown metric {metric!r}; paired comparisons support {list(COUNT_METRICS)}")
    y_true, pred_a, pred_b = np.asarray(y_true), np.asarray(pred_a), np.asarray(pred_b)
    if not len(y_true) == len(pred_a) == len(pred_b) == len(np.asarray(groups)):
        raise ValueError(
            f"y_true, pred_a, pred_b and groups differ in length: "
            f"{len(y_true)}, {len(pred_a)}, {len(pred_b)}, {len(np.asarray(groups))}"
        )
    delta = count_metric(y_true, pred_a, metric) - count_metric(y_true, pred_b, metric)
    a = group_bootstrap_samples(y_true, pred_a, groups, n=n, seed=seed)[metric]
    b = group_bootstrap_samples(y_true, pred_b, groups, n=n, seed=seed)[metric]
    samples = (a - b)[np.isfinite(a - b)]
    low, high = percentile_interval(samples)
    return delta, low, high, samples


def per_source_metrics(
    frame: pd.DataFrame, proba: np.ndarray, classes: Sequence[str], threshold: float = 0.5
) -> pd.DataFrame:
    """covid_metrics for each source in `frame` (columns source, label, group_id; rows aligned with proba)."""
    rows = []
    for source in sorted(frame["source"].unique()):
        mask = (frame["source"] == source).to_numpy()
        rows.append(
            {
                "source": source,
                **covid_metrics(
                    frame["label"].to_numpy()[mask], proba[mask], classes, frame["group_id"].to_numpy()[mask], threshold
                ),
            }
        )
    return pd.DataFrame(rows)


def confusion(labels, proba: np.ndarray, classes: Sequence[str], threshold: float = 0.5) -> pd.DataFrame:
    """Counts of true × predicted class, predictions at `threshold` (decision.predict_labels)."""
    matrix = confusion_matrix(as_outputs(labels, classes), predict_labels(proba, classes, threshold), labels=classes)
    return pd.DataFrame(matrix, index=[f"true {c}" for c in classes], columns=[f"predicted {c}" for c in classes])


def save_plots(
    labels,
    proba: np.ndarray,
    classes: Sequence[str],
    folder,
    threshold: float = 0.5,
    uncalibrated: np.ndarray | None = None,
) -> list[str]:
    """Confusion matrix (at `threshold`), ROC, precision-recall and calibration plots as PNG files; their paths.

    With `uncalibrated` probabilities the calibration plot shows the curve before calibration too."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import CalibrationDisplay
    from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay

    labels = as_outputs(labels, classes)
    predicted = predict_labels(proba, classes, threshold)
    y = labels == POSITIVE
    score = proba[:, classes.index(POSITIVE)]
    paths = []

    def save(name, draw):
        figure, axis = plt.subplots(figsize=(5, 4.5))
        draw(axis)
        figure.tight_layout()
        path = f"{folder}/{name}.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        paths.append(path)

    save(
        "confusion_matrix", lambda ax: ConfusionMatrixDisplay.from_predictions(labels, predicted, labels=classes, ax=ax)
    )
    if len(np.unique(y)) == 2:
        save("roc_curve", lambda ax: RocCurveDisplay.from_predictions(y, score, name="covid vs rest", ax=ax))
        save("pr_curve", lambda ax: PrecisionRecallDisplay.from_predictions(y, score, name="covid vs rest", ax=ax))

        def calibration(ax):
            if uncalibrated is not None:
                CalibrationDisplay.from_predictions(
                    y,
                    np.asarray(uncalibrated)[:, classes.index(POSITIVE)],
                    n_bins=10,
                    name="covid, uncalibrated",
                    ax=ax,
                )
            CalibrationDisplay.from_predictions(y, score, n_bins=10, name=POSITIVE, ax=ax)

        save("calibration", calibration)
    return paths


def source_predictability(features: np.ndarray, sources: np.ndarray, groups: np.ndarray, seed: int = 0) -> dict:
    """Grouped cross-validated accuracy of predicting the source from features, next to the majority rate."""
    counts = pd.Series(sources).value_counts()
    majority = float(counts.iloc[0] / len(sources))
    folds = min(5, int(counts.min())) if len(counts) > 1 else 0
    if folds < 2:
        return {"source_accuracy": float("nan"), "source_majority_rate": majority, "sources": int(len(counts))}
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
    predicted = cross_val_predict(
        classifier, features, sources, groups=groups, cv=StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
    )
    return {
        "source_accuracy": float((predicted == sources).mean()),
        "source_majority_rate": majority,
        "sources": int(len(counts)),
    }
