import numpy as np
import pytest
from scipy.special import expit, logit, softmax
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, roc_auc_score

from covid_xray.evaluation.calibration import (
    apply_calibration,
    expected_calibration_error,
    fit_calibration,
    reliability,
)
from covid_xray.evaluation.decision import OperatingPoint

CLASSES = ["covid", "normal", "pneumonia"]


def overconfident(n: int, seed: int, temperature: float = 3.0):
    """Labels drawn from softmax(z) and a model that reports softmax(temperature * z): too sure of itself."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.0, (n, 3))
    truth = softmax(z, axis=1)
    labels = np.array([rng.choice(CLASSES, p=p) for p in truth])
    return labels, softmax(temperature * z, axis=1)


def test_temperature_scaling_undoes_overconfidence_and_keeps_the_ranking():
    labels, proba = overconfident(4000, seed=0)
    (temperature,) = fit_calibration("temperature", labels, proba, CLASSES)
    assert temperature == pytest.approx(3.0, rel=0.1)
    test_labels, test_proba = overconfident(3000, seed=1)
    calibrated = apply_calibration("temperature", (temperature,), test_proba, CLASSES)
    assert np.allclose(calibrated.sum(1), 1) and (calibrated.argmax(1) == test_proba.argmax(1)).all()
    binary = np.column_stack([test_proba[:, 0], 1 - test_proba[:, 0]])
    y = test_labels == "covid"
    binary_calibrated = apply_calibration("temperature", (temperature,), binary, ["covid", "normal"])
    assert roc_auc_score(y, binary_calibrated[:, 0]) == pytest.approx(roc_auc_score(y, binary[:, 0]), abs=1e-12)
    before, after = reliability(test_labels, test_proba, CLASSES), reliability(test_labels, calibrated, CLASSES)
    assert before["ece"] > 0.05 and after["ece"] < before["ece"] / 2 and after["brier"] < before["brier"]


def test_platt_scaling_recovers_the_logistic_map_and_keeps_the_other_classes_proportions():
    rng = np.random.default_rng(2)
    reported = rng.uniform(0.02, 0.98, 5000)
    labels = np.where(rng.random(5000) < expit(2.0 * logit(reported) - 1.0), "covid", "normal")
    others = rng.uniform(0.2, 0.8, 5000)[:, None] * np.array([[1, -1]]) + np.array([[0, 1]])
    proba = np.column_stack([reported, (1 - reported)[:, None] * others])
    labels = np.where((labels == "normal") & (others[:, 1] > others[:, 0]), "pneumonia", labels)
    a, b = fit_calibration("platt", labels, proba, CLASSES)
    assert (a, b) == pytest.approx((2.0, -1.0), abs=0.15)
    calibrated = apply_calibration("platt", (a, b), proba, CLASSES)
    assert np.allclose(calibrated[:, 0], expit(a * logit(reported) + b)) and np.allclose(calibrated.sum(1), 1)
    assert np.allclose(calibrated[:, 1] / calibrated[:, 2], proba[:, 1] / proba[:, 2])


def test_platt_on_separable_validation_data_stays_finite():
    labels = np.array(["covid"] * 5 + ["normal"] * 5)
    p = np.r_[np.linspace(0.6, 0.9, 5), np.linspace(0.1, 0.4, 5)]
    a, b = fit_calibration("platt", labels, np.column_stack([p, 1 - p]), ["covid", "normal"])
    calibrated = apply_calibration("platt", (a, b), np.column_stack([p, 1 - p]), ["covid", "normal"])[:, 0]
    # Platt's targets for 5 positives and 5 negatives are 6/7 and 1/7: no probability of 0 or 1.
    assert np.isfinite([a, b]).all() and calibrated.min() > 0.05 and calibrated.max() < 0.95
    with pytest.raises(ValueError, match="needs covid and non-covid"):
        fit_calibration("platt", labels[:5], np.column_stack([p, 1 - p])[:5], ["covid", "normal"])


def test_operating_point_calibrates_through_apply_calibration_and_bad_parameters_are_named():
    _, proba = overconfident(50, seed=3)
    point = OperatingPoint(0.4, "youden", "temperature", (2.5,))
    assert np.allclose(point.calibrate(proba, CLASSES), apply_calibration("temperature", (2.5,), proba, CLASSES))
    restored = OperatingPoint.from_record(point.to_record())
    assert np.allclose(restored.calibrate(proba, CLASSES), point.calibrate(proba, CLASSES))
    assert np.array_equal(apply_calibration("none", (), proba, CLASSES), proba)
    with pytest.raises(ValueError, match="'platt' takes 2 parameter"):
        apply_calibration("platt", (1.0,), proba, CLASSES)
    with pytest.raises(ValueError, match="unknown calibration method 'isotonic'"):
        apply_calibration("isotonic", (), proba, CLASSES)
    with pytest.raises(ValueError, match="do not match the 3 classes"):
        apply_calibration("temperature", (2.0,), proba[:, :2], CLASSES)
    with pytest.raises(ValueError, match=r"labels \['tb'\] are not among"):
        fit_calibration("temperature", ["tb"] * 50, proba, CLASSES)


def test_expected_calibration_error_weights_calibration_curve_bins_by_their_images():
    y = np.array([1, 0, 1, 1, 0, 0, 1, 0], bool)
    p = np.array([0.05, 0.08, 0.35, 0.38, 0.32, 0.91, 0.95, 0.99])
    # bins [0, .1): 2 images, observed 0.5, mean 0.065; [.3, .4): 3, 2/3 vs 0.35; [.9, 1]: 3, 1/3 vs 0.95
    expected = 2 / 8 * abs(0.5 - 0.065) + 3 / 8 * abs(2 / 3 - 0.35) + 3 / 8 * abs(1 / 3 - 0.95)
    assert expected_calibration_error(y, p) == pytest.approx(expected)
    observed, predicted = calibration_curve(y, p, n_bins=10)
    assert len(observed) == 3
    numbers = reliability(np.where(y, "covid", "normal"), np.column_stack([p, 1 - p]), ["covid", "normal"])
    assert numbers == pytest.approx({"ece": expected, "brier": brier_score_loss(y, p)})
