"""COVID-vs-rest metrics with 95% confidence intervals, per source, and the plots that show them.

Proportions get Wilson intervals (scipy), ROC AUC a percentile bootstrap. Everything else is
scikit-learn.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import binomtest, rankdata
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, brier_score_loss, confusion_matrix, f1_score, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

POSITIVE = "covid"


def wilson(successes: int, total: int) -> tuple[float, float, float]:
    """Point estimate and 95% Wilson interval of successes / total (nan when total is 0)."""
    if total == 0:
        return math.nan, math.nan, math.nan
    interval = binomtest(int(successes), int(total)).proportion_ci(confidence_level=0.95, method="wilson")
    return successes / total, float(interval.low), float(interval.high)


def group_bootstrap_indices(groups: np.ndarray, n: int = 1000, seed: int = 0) -> list[np.ndarray]:
    """`n` cluster-bootstrap resamples of row indices: whole groups (patients) drawn with replacement.

    Images of one patient are not independent; resampling patients, not images, gives intervals that
    reflect how many patients a number rests on. Each resample is an index array into the rows."""
    groups = np.asarray(groups)
    if len(groups) == 0:
        return [np.zeros(0, int) for _ in range(n)]
    _, codes = np.unique(groups, return_inverse=True)
    order = np.argsort(codes, kind="stable")
    starts = np.searchsorted(codes[order], np.arange(codes.max() + 1))
    members = np.split(order, starts[1:])
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(members), (n, len(members)))
    return [np.concatenate([members[g] for g in draw]) for draw in draws]


def bootstrap_auc(y: np.ndarray, score: np.ndarray, n: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """ROC AUC with a 95% percentile bootstrap interval over `n` resamples of the images.

    Each resample's AUC is the Mann-Whitney U statistic from midranks (what roc_auc_score computes, ties
    counting one half), for all resamples at once: 1000 calls of roc_auc_score took 2.6 s per evaluation."""
    y = np.asarray(y, dtype=bool)
    if len(np.unique(y)) < 2:
        return math.nan, math.nan, math.nan
    samples = np.random.default_rng(seed).integers(0, len(y), (n, len(y)))
    positives, scores = y[samples], np.asarray(score, dtype=np.float64)[samples]
    n_pos = positives.sum(axis=1)
    n_neg = len(y) - n_pos
    both = (n_pos > 0) & (n_neg > 0)
    ranks = rankdata(scores[both], axis=1)
    u = (ranks * positives[both]).sum(axis=1) - n_pos[both] * (n_pos[both] + 1) / 2
    low, high = np.percentile(u / (n_pos[both] * n_neg[both]), [2.5, 97.5])
    return float(roc_auc_score(y, score)), float(low), float(high)


def covid_metrics(labels: list[str] | np.ndarray, proba: np.ndarray, classes: list[str]) -> dict[str, float]:
    """Flat dict of metrics: name, name_ci_low, name_ci_high for each proportion; covid is the positive class."""
    labels = np.asarray(labels)
    predicted = np.asarray(classes)[proba.argmax(axis=1)]
    y = labels == POSITIVE
    y_hat = predicted == POSITIVE
    score = proba[:, classes.index(POSITIVE)]
    tp, fn = int((y & y_hat).sum()), int((y & ~y_hat).sum())
    tn, fp = int((~y & ~y_hat).sum()), int((~y & y_hat).sum())
    proportions = {
        "accuracy": (int((predicted == labels).sum()), len(labels)),
        "sensitivity": (tp, tp + fn),
        "specificity": (tn, tn + fp),
        "ppv": (tp, tp + fp),
        "npv": (tn, tn + fn),
    }
    result: dict[str, float] = {"n": float(len(labels)), "n_covid": float(y.sum())}
    for name, (k, total) in proportions.items():
        result[name], result[f"{name}_ci_low"], result[f"{name}_ci_high"] = wilson(k, total)
    result["roc_auc"], result["roc_auc_ci_low"], result["roc_auc_ci_high"] = bootstrap_auc(y, score)
    both = len(np.unique(y)) == 2
    result["balanced_accuracy"] = float(balanced_accuracy_score(y, y_hat)) if both else math.nan
    result["f1"] = float(f1_score(y, y_hat, zero_division=0))
    result["brier"] = float(brier_score_loss(y, score)) if len(y) else math.nan
    return result


def per_source_metrics(frame: pd.DataFrame, proba: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """covid_metrics for each source in `frame` (columns source, label; rows aligned with proba)."""
    rows = []
    for source in sorted(frame["source"].unique()):
        mask = (frame["source"] == source).to_numpy()
        rows.append({"source": source, **covid_metrics(frame["label"].to_numpy()[mask], proba[mask], classes)})
    return pd.DataFrame(rows)


def confusion(labels, proba: np.ndarray, classes: list[str]) -> pd.DataFrame:
    predicted = np.asarray(classes)[proba.argmax(axis=1)]
    matrix = confusion_matrix(labels, predicted, labels=classes)
    return pd.DataFrame(matrix, index=[f"true {c}" for c in classes], columns=[f"predicted {c}" for c in classes])


def mcnemar_worse(candidate_correct: np.ndarray, champion_correct: np.ndarray) -> tuple[int, int, float]:
    """Exact McNemar test that the candidate is worse than the champion on the same images.

    Returns (b, c, p): b = images only the champion gets right, c = only the candidate, and the one-sided p-value.
    """
    b = int((champion_correct & ~candidate_correct).sum())
    c = int((candidate_correct & ~champion_correct).sum())
    p = binomtest(b, b + c, 0.5, alternative="greater").pvalue if b + c else 1.0
    return b, c, float(p)


def save_plots(labels, proba: np.ndarray, classes: list[str], folder) -> list[str]:
    """Confusion matrix, ROC, precision-recall and calibration plots as PNG files; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import CalibrationDisplay
    from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay

    labels = np.asarray(labels)
    predicted = np.asarray(classes)[proba.argmax(axis=1)]
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

    save("confusion_matrix", lambda ax: ConfusionMatrixDisplay.from_predictions(labels, predicted, labels=classes, ax=ax))
    if len(np.unique(y)) == 2:
        save("roc_curve", lambda ax: RocCurveDisplay.from_predictions(y, score, name="covid vs rest", ax=ax))
        save("pr_curve", lambda ax: PrecisionRecallDisplay.from_predictions(y, score, name="covid vs rest", ax=ax))
        save("calibration", lambda ax: CalibrationDisplay.from_predictions(y, score, n_bins=10, name="covid", ax=ax))
    return paths


def source_predictability(features: np.ndarray, sources: np.ndarray, groups: np.ndarray, seed: int = 0) -> dict:
    """Grouped cross-validated accuracy of predicting the source from features, next to the majority rate."""
    counts = pd.Series(sources).value_counts()
    majority = float(counts.iloc[0] / len(sources))
    folds = min(5, int(counts.min())) if len(counts) > 1 else 0
    if folds < 2:
        return {"source_accuracy": float("nan"), "source_majority_rate": majority, "sources": int(len(counts))}
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
    predicted = cross_val_predict(classifier, features, sources, groups=groups,
                                  cv=StratifiedGroupKFold(folds, shuffle=True, random_state=seed))  # fmt: skip
    return {"source_accuracy": float((predicted == sources).mean()), "source_majority_rate": majority,
            "sources": int(len(counts))}  # fmt: skip
