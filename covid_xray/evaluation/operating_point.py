"""Choosing the operating point on the validation split: calibration first (when configured), then the threshold.

The threshold applies to the calibrated p(covid), as `decision.predict_labels` does: an image is covid when its
probability reaches it. Candidate thresholds are the validation images' own scores (scikit-learn's roc_curve),
so the validation sensitivity and specificity a rule sees are exactly those of the chosen threshold.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_curve

from ..config import OperatingPointConfig
from ..labels import POSITIVE
from .calibration import apply_calibration, fit_calibration
from .decision import OperatingPoint


def _roc(y: np.ndarray, score: np.ndarray, rule: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if y.all() or not y.any():
        raise ValueError(
            f"rule {rule} needs covid and non-covid images in the validation split, "
            f"got {int(y.sum())} covid of {len(y)}"
        )
    fpr, tpr, thresholds = roc_curve(y, score, drop_intermediate=False)
    return fpr[1:], tpr[1:], thresholds[1:]  # the first threshold (inf) predicts no covid at all


def youden_threshold(y: np.ndarray, score: np.ndarray) -> float:
    """The validation score maximising sensitivity + specificity - 1 (the highest such score on ties)."""
    fpr, tpr, thresholds = _roc(np.asarray(y, dtype=bool), np.asarray(score, dtype=np.float64), "youden")
    youden = tpr - fpr
    return float(thresholds[np.flatnonzero(youden == youden.max())[0]])


def target_sensitivity_threshold(y: np.ndarray, score: np.ndarray, target: float) -> float:
    """The highest validation score at which the validation sensitivity reaches `target`."""
    _, tpr, thresholds = _roc(np.asarray(y, dtype=bool), np.asarray(score, dtype=np.float64), "target_sensitivity")
    return float(thresholds[np.flatnonzero(tpr >= target - 1e-12)[0]])  # tpr rises as the threshold falls


def choose_operating_point(
    val_labels, val_proba: np.ndarray, classes: Sequence[str], config: OperatingPointConfig
) -> OperatingPoint:
    """Fit the configured calibration on validation, then pick the threshold by the configured rule."""
    parameters = fit_calibration(config.calibration, val_labels, val_proba, classes)
    calibrated = apply_calibration(config.calibration, parameters, val_proba, classes)
    y = np.asarray(val_labels) == POSITIVE
    score = calibrated[:, classes.index(POSITIVE)]
    if config.rule == "fixed":
        threshold = float(config.threshold or 0.0)  # set: the config refuses rule fixed without it
    elif config.rule == "youden":
        threshold = youden_threshold(y, score)
    elif config.rule == "target_sensitivity":
        threshold = target_sensitivity_threshold(y, score, float(config.target_sensitivity or 0.0))
    else:
        raise ValueError(f"unknown operating-point rule {config.rule!r}")
    return OperatingPoint(float(np.clip(threshold, 0.0, 1.0)), config.rule, config.calibration, parameters)
