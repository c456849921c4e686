"""Calibration of the class probabilities, fitted on the validation split, and reliability numbers.

Class weights and source × label sampling move a model's outputs away from frequencies: calibration makes
"p(covid) = 0.8" mean about 80 of 100 such images are COVID-19 (at the validation split's prevalence).

- `temperature`: one temperature T for all classes, softmax(log p / T) (Guo et al., 2017). It keeps every
  image's order of classes; with two classes also the ranking of images (ROC AUC does not change).
- `platt`: a logistic regression of covid vs rest on the covid logit (Platt, 1999, with his smoothed targets,
  so separable validation data gives a finite slope); the other classes share the rest in their proportions.

The fitted numbers are `OperatingPoint.parameters`; `apply_calibration` is what `OperatingPoint.calibrate` calls.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from scipy.special import expit, log_softmax, logit, softmax
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss

from ..labels import POSITIVE, as_outputs

METHODS = ("none", "temperature", "platt")
EPSILON = 1e-7  # probabilities are clipped to [EPSILON, 1 - EPSILON] before logs and logits
TEMPERATURE_BOUNDS = (0.05, 20.0)


def _checked(proba: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[1] != len(classes):
        raise ValueError(f"probabilities of shape {proba.shape} do not match the {len(classes)} classes {classes}")
    return proba


def _class_indices(labels, classes: Sequence[str]) -> np.ndarray:
    labels = as_outputs(labels, classes)
    unknown = sorted(str(label) for label in set(labels.tolist()) - set(classes))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the classes {classes}")
    return np.array([classes.index(label) for label in labels], dtype=int)


def _covid_logit(proba: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    return logit(np.clip(proba[:, classes.index(POSITIVE)], EPSILON, 1 - EPSILON))


def fit_temperature(labels, proba: np.ndarray, classes: Sequence[str]) -> tuple[float]:
    """The temperature minimising the validation log-loss of softmax(log p / T), within TEMPERATURE_BOUNDS."""
    index = _class_indices(labels, classes)
    if len(index) == 0:
        raise ValueError("cannot fit a temperature on zero validation images")
    log_p = np.log(np.clip(_checked(proba, classes), EPSILON, 1.0))

    def loss(log_t: float) -> float:
        return -float(log_softmax(log_p / np.exp(log_t), axis=1)[np.arange(len(index)), index].mean())

    found = minimize_scalar(loss, bounds=tuple(np.log(TEMPERATURE_BOUNDS)), method="bounded")
    return (float(np.exp(found.x)),)


def fit_platt(labels, proba: np.ndarray, classes: Sequence[str]) -> tuple[float, float]:
    """(a, b) of p(covid) = sigmoid(a * logit(p_covid) + b), fitted to Platt's smoothed validation targets."""
    y = np.asarray(labels) == POSITIVE
    if y.all() or not y.any():
        raise ValueError("Platt scaling needs covid and non-covid images in the validation split")
    z = _covid_logit(_checked(proba, classes), classes)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    target = np.where(y, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        s = params[0] * z + params[1]
        value = np.mean(target * np.logaddexp(0, -s) + (1 - target) * np.logaddexp(0, s))
        residual = expit(s) - target
        return float(value), np.array([np.mean(residual * z), np.mean(residual)])

    found = minimize(loss, x0=np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
    if not found.success:
        raise RuntimeError(f"Platt scaling did not converge: {found.message}")
    return float(found.x[0]), float(found.x[1])


def fit_calibration(method: str, labels, proba: np.ndarray, classes: Sequence[str]) -> tuple[float, ...]:
    """The parameters of `method` fitted on validation labels and probabilities (none: no parameters)."""
    if method == "none":
        return ()
    if method == "temperature":
        return fit_temperature(labels, proba, classes)
    if method == "platt":
        return fit_platt(labels, proba, classes)
    raise ValueError(f"unknown calibration method {method!r}; known: {list(METHODS)}")


def apply_calibration(method: str, parameters, proba: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Calibrated class probabilities (rows sum to 1) from a method's fitted parameters."""
    proba = _checked(proba, classes)
    parameters = tuple(float(p) for p in parameters)
    expected = {"none": 0, "temperature": 1, "platt": 2}
    if method not in expected:
        raise ValueError(f"unknown calibration method {method!r}; known: {list(METHODS)}")
    if len(parameters) != expected[method]:
        raise ValueError(f"calibration {method!r} takes {expected[method]} parameter(s), got {list(parameters)}")
    if method == "none":
        return proba
    if method == "temperature":
        if not parameters[0] > 0:
            raise ValueError(f"temperature must be positive, got {parameters[0]}")
        return softmax(np.log(np.clip(proba, EPSILON, 1.0)) / parameters[0], axis=1)
    covid = classes.index(POSITIVE)
    others = np.delete(np.arange(len(classes)), covid)
    p_covid = expit(parameters[0] * _covid_logit(proba, classes) + parameters[1])
    rest = proba[:, others].sum(axis=1, keepdims=True)
    share = np.divide(proba[:, others], rest, out=np.full_like(proba[:, others], 1 / len(others)), where=rest > 0)
    calibrated = np.empty_like(proba)
    calibrated[:, covid] = p_covid
    calibrated[:, others] = share * (1 - p_covid)[:, None]
    return calibrated


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """Σ over sklearn's calibration_curve bins (uniform) of the bin's share of images × |observed - predicted|."""
    y, p = np.asarray(y, dtype=bool), np.asarray(p, dtype=np.float64)
    if len(y) == 0:
        return float("nan")
    observed, predicted = calibration_curve(y, p, n_bins=n_bins, strategy="uniform", pos_label=True)
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, n_bins + 1)[1:-1], p), minlength=n_bins)
    share = counts[counts > 0] / len(p)  # the non-empty bins, in calibration_curve's order
    return float(np.sum(share * np.abs(observed - predicted)))


def reliability(labels, proba: np.ndarray, classes: Sequence[str], n_bins: int = 10) -> dict[str, float]:
    """Covid-vs-rest reliability of probabilities: expected calibration error (10 uniform bins) and Brier score."""
    proba = _checked(proba, classes)
    y = np.asarray(labels) == POSITIVE
    p = np.clip(proba[:, classes.index(POSITIVE)], 0.0, 1.0)
    if len(y) == 0:
        return {"ece": float("nan"), "brier": float("nan")}
    return {"ece": expected_calibration_error(y, p, n_bins), "brier": float(brier_score_loss(y, p))}
