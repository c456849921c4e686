"""Score a trained model on its validation and test splits: the one evaluation that the evaluate step and every
leave-one-source-out fold run.

Operating point on validation (calibration, then the threshold), then the test metrics at it with patient-group
intervals, reliability before and after calibration, and the out-of-distribution detector (fitted on the training
split's features, its threshold set on validation's) with the test split's flag rate.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np

from ..config import ModelConfig, RunConfig
from ..data.stream import Split
from ..labels import POSITIVE
from ..modeling.features import predict_for_evaluation
from ..modeling.loader import pixel_batches
from .calibration import reliability
from .decision import OperatingPoint
from .metrics import covid_metrics, per_class_metrics
from .ood import OODDetector, fit_detector
from .operating_point import choose_operating_point

log = logging.getLogger(__name__)

ONE_CLASS_RULE = "fixed 0.5: the validation split has one class"


@dataclass
class Evaluation:
    """What scoring one trained model gave; `test` and `val` are flat metric dicts (covid_metrics' keys and more)."""

    operating_point: OperatingPoint
    test_raw: np.ndarray  # uncalibrated class probabilities of the test rows
    test_proba: np.ndarray  # calibrated: what the threshold applies to
    val_proba: np.ndarray
    test_features: np.ndarray  # penultimate features (the shortcut check)
    val_features: np.ndarray
    test: dict[str, float]
    val: dict[str, float]
    ood: OODDetector


def class_names(split: Split, classes: Sequence[str]) -> np.ndarray:
    """The class name of each row of `split`."""
    return np.asarray(classes)[np.asarray(split.labels, dtype=int)]


def operating_point_on_validation(
    val_labels: np.ndarray, val_proba: np.ndarray, classes: Sequence[str], config: RunConfig, context: str
) -> OperatingPoint:
    """The configured operating point, chosen on validation; when validation holds one class only (a small remaining
    source mix in a fold), no rule can be fitted, and it says so and scores at an uncalibrated 0.5."""
    if len(np.unique(np.asarray(val_labels) == POSITIVE)) < 2:
        log.warning("%s: the validation split has one class, so it is scored at a fixed 0.5", context)
        return OperatingPoint(0.5, ONE_CLASS_RULE)
    return choose_operating_point(val_labels, val_proba, classes, config.evaluation.operating_point)


def evaluate(
    model: keras.Model,
    model_config: ModelConfig,
    train: Split,
    val: Split,
    test: Split,
    config: RunConfig,
    context: str,
) -> Evaluation:
    """Score `model` (trained on `train`, early-stopped on `val`) on `test`, at the operating point chosen on `val`."""
    classes = list(config.classes)
    test_raw, test_features, test_ood = predict_for_evaluation(model, pixel_batches(test))
    val_raw, val_features, val_ood = predict_for_evaluation(model, pixel_batches(val))
    test_labels, val_labels = class_names(test, classes), class_names(val, classes)
    # A variant trained on some findings only (`train_findings`) chooses its operating point among them, as it was
    # early-stopped on them; its validation and test metrics, like every variant's, score every kept finding.
    seen = val.of_findings(model_config.train_findings)
    point = operating_point_on_validation(val_labels[seen], val_raw[seen], classes, config, context)
    test_proba, val_proba = point.calibrate(test_raw, classes), point.calibrate(val_raw, classes)
    test_metrics = covid_metrics(test_labels, test_proba, classes, test.groups, point.threshold)
    val_metrics = covid_metrics(val_labels, val_proba, classes, val.groups, point.threshold)
    before, after = reliability(test_labels, test_raw, classes), reliability(test_labels, test_proba, classes)
    test_metrics |= per_class_metrics(test_labels, test_proba, classes, point.threshold)
    covid = classes.index(POSITIVE)
    # How much the network's own p(covid) varies over the images (before calibration, which flattens a weak model's
    # answers without making it constant): near 0, it answers the same whatever the image (collapsed).
    test_metrics["score_sd"] = float(np.std(test_raw[:, covid])) if len(test_raw) else float("nan")
    val_metrics["score_sd"] = float(np.std(val_raw[:, covid])) if len(val_raw) else float("nan")
    test_metrics |= {
        "ece": after["ece"],
        "ece_before_calibration": before["ece"],
        "brier_before_calibration": before["brier"],
    }
    # Fitted on the training split's features, threshold on validation's: the flags the logged model raises.
    ood = fit_detector(model, model_config, train.with_findings(model_config.train_findings), val_ood, config)
    test_metrics["ood_flag_rate"] = ood.flag_rate(test_ood)
    val_metrics["ood_flag_rate"] = ood.val_flag_rate
    return Evaluation(
        point, test_raw, test_proba, val_proba, test_features, val_features, test_metrics, val_metrics, ood
    )
