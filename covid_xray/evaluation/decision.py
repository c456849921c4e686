"""The decision rule: from class probabilities to a predicted class, at the model's recorded operating point.

This is the one place that turns probabilities into classes. Metrics, plots, the promotion gate,
`predict` and the served model all call `OperatingPoint.labels`, so a threshold chosen on validation
is the threshold everywhere. An image is `covid` when its (calibrated) covid probability reaches the
threshold; otherwise it is the most probable of the other classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from ..labels import POSITIVE
from .calibration import apply_calibration


@dataclass(frozen=True)
class OperatingPoint:
    """A decision threshold on the covid probability, after an optional calibration of the probabilities.

    `calibration` is 'none' or the name of a calibration method; `parameters` are its fitted numbers
    (see covid_xray.calibration). The record (`to_record`) is stored with every logged model."""

    threshold: float = 0.5
    rule: str = "fixed"
    calibration: str = "none"
    parameters: tuple[float, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0 or not np.isfinite(self.threshold):
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")

    def calibrate(self, proba: np.ndarray, classes: Sequence[str]) -> np.ndarray:
        """The calibrated class probabilities (unchanged when calibration is 'none')."""
        if self.calibration == "none":
            return np.asarray(proba, dtype=np.float64)
        return apply_calibration(self.calibration, self.parameters, np.asarray(proba, dtype=np.float64), classes)

    def labels(self, proba: np.ndarray, classes: Sequence[str]) -> np.ndarray:
        """Predicted class names for calibrated probabilities `proba` (n, len(classes))."""
        return predict_labels(proba, classes, self.threshold)

    def to_record(self) -> dict:
        record = asdict(self)
        record["parameters"] = [float(p) for p in self.parameters]
        return record

    @classmethod
    def from_record(cls, record: dict | None) -> OperatingPoint:
        """The operating point stored with a model; a model logged before operating points existed used 0.5."""
        if not record:
            return cls()
        return cls(
            float(record["threshold"]),
            str(record.get("rule", "fixed")),
            str(record.get("calibration", "none")),
            tuple(float(p) for p in record.get("parameters", ())),
        )


def predict_labels(proba: np.ndarray, classes: Sequence[str], threshold: float) -> np.ndarray:
    """Class names: covid where p(covid) >= threshold, else the most probable non-covid class."""
    proba = np.asarray(proba, dtype=np.float64)
    names = np.asarray(classes)
    if len(proba) == 0:
        return names[:0]
    covid = classes.index(POSITIVE)
    others = np.delete(np.arange(len(classes)), covid)
    rest = names[others][proba[:, others].argmax(axis=1)]
    return np.where(proba[:, covid] >= threshold, POSITIVE, rest)
