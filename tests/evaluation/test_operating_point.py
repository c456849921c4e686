from pathlib import Path

import numpy as np
import pytest
import yaml

from covid_xray.config import ConfigError, OperatingPointConfig, load_config, parse_config
from covid_xray.evaluation.decision import predict_labels
from covid_xray.evaluation.metrics import covid_metrics
from covid_xray.evaluation.operating_point import choose_operating_point

CLASSES = ["covid", "normal"]


def validation(n: int = 200, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.where(rng.random(n) < 0.4, "covid", "normal")
    p = np.clip(np.round(rng.normal(0.3, 0.15, n) + (labels == "covid") * 0.25, 3), 0.001, 0.999)
    return labels, np.column_stack([p, 1 - p])


def rates(labels, proba, threshold):
    predicted = predict_labels(proba, CLASSES, threshold)
    y, y_hat = labels == "covid", predicted == "covid"
    return (y & y_hat).sum() / y.sum(), (~y & ~y_hat).sum() / (~y).sum()


def test_youden_threshold_maximises_sensitivity_plus_specificity_over_every_threshold():
    labels, proba = validation()
    point = choose_operating_point(labels, proba, CLASSES, OperatingPointConfig(rule="youden", calibration="none"))
    assert (point.rule, point.calibration, point.parameters) == ("youden", "none", ())
    best = max(sum(rates(labels, proba, t)) for t in np.unique(proba[:, 0]))
    assert sum(rates(labels, proba, point.threshold)) == pytest.approx(best)
    assert point.threshold in set(proba[:, 0]) and point.threshold < 0.5  # the model under-calls covid


def test_target_sensitivity_takes_the_highest_threshold_that_reaches_the_target():
    labels, proba = validation(seed=1)
    config = OperatingPointConfig(rule="target_sensitivity", target_sensitivity=0.9, calibration="none")
    point = choose_operating_point(labels, proba, CLASSES, config)
    assert rates(labels, proba, point.threshold)[0] >= 0.9
    higher = np.unique(proba[:, 0])[np.unique(proba[:, 0]) > point.threshold].min()
    assert rates(labels, proba, higher)[0] < 0.9


def test_calibrated_operating_point_thresholds_the_calibrated_probabilities():
    labels, proba = validation(seed=2)
    plain = choose_operating_point(labels, proba, CLASSES, OperatingPointConfig(rule="youden", calibration="none"))
    for method in ("temperature", "platt"):
        point = choose_operating_point(labels, proba, CLASSES, OperatingPointConfig(rule="youden", calibration=method))
        assert point.calibration == method and len(point.parameters) == {"temperature": 1, "platt": 2}[method]
        calibrated = point.calibrate(proba, CLASSES)
        # Both calibrations are monotone in p(covid): the same validation images are called covid.
        assert (point.labels(calibrated, CLASSES) == predict_labels(proba, CLASSES, plain.threshold)).all(), method
    fixed_rule = OperatingPointConfig(rule="fixed", threshold=0.7, calibration="platt")
    fixed = choose_operating_point(labels, proba, CLASSES, fixed_rule)
    assert fixed.threshold == 0.7 and len(fixed.parameters) == 2


def test_a_threshold_chosen_on_validation_changes_the_class_of_a_borderline_image_in_the_metrics():
    labels, proba = validation(seed=3)
    point = choose_operating_point(labels, proba, CLASSES, OperatingPointConfig(rule="youden", calibration="none"))
    borderline = np.array([[(point.threshold + 0.5) / 2, 1 - (point.threshold + 0.5) / 2]])
    assert point.labels(borderline, CLASSES)[0] == "covid" and predict_labels(borderline, CLASSES, 0.5)[0] == "normal"
    at_point = covid_metrics(["covid"], borderline, CLASSES, threshold=point.threshold)
    assert at_point["sensitivity"] == 1.0 and covid_metrics(["covid"], borderline, CLASSES)["sensitivity"] == 0.0


def test_rules_that_need_both_classes_say_so():
    labels, proba = validation()
    with pytest.raises(ValueError, match="rule youden needs covid and non-covid images in the validation split"):
        choose_operating_point(
            labels[labels == "normal"],
            proba[labels == "normal"],
            CLASSES,
            OperatingPointConfig(rule="youden", calibration="none"),
        )


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"rule": "fixed"}, "rule fixed needs `threshold`"),
        ({"rule": "target_sensitivity"}, "rule target_sensitivity needs `target_sensitivity`"),
        ({"rule": "youden", "threshold": 0.4}, "`threshold` is not used by rule youden"),
        (
            {"rule": "fixed", "threshold": 0.4, "target_sensitivity": 0.9},
            "`target_sensitivity` is not used by rule fixed",
        ),
        ({"rule": "fixed", "threshold": 1.5}, "less than or equal to 1"),
        ({"rule": "youden", "calibration": "isotonic"}, "'none', 'temperature' or 'platt'"),
    ],
)
def test_operating_point_config_is_validated(settings, message):
    raw = yaml.safe_load(Path("configs/tiny.yaml").read_text())
    raw["evaluation"] = {"operating_point": settings}
    with pytest.raises(ConfigError, match=message):
        parse_config(raw, "x.yaml")


def test_the_default_config_picks_youden_on_temperature_calibrated_probabilities():
    point = load_config("configs/default.yaml").evaluation.operating_point
    assert (point.rule, point.calibration, point.threshold) == ("youden", "temperature", None)
