"""Candidate vs champion on the same test images: a paired non-inferiority test that resamples patients.

Both models' predicted classes on the same images give a paired difference of one metric (candidate minus
champion). Its one-sided (1 - alpha) confidence bounds come from a cluster bootstrap over patient groups, so
a patient with ten images counts once per draw, not ten times. The outcome:

- `better`: the lower bound is above 0 (superior);
- `non-inferior`: the lower bound is above -margin (at most `margin` worse, with 1 - alpha confidence);
- `inferior`: not non-inferior, and the upper bound is below 0 (significantly worse);
- `inconclusive`: neither (the interval holds both -margin and 0: the data cannot tell);
- `insufficient`: too few images or patients for the test to have power; nothing is decided.

`better` and `non-inferior` promote, the others do not.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .metrics import count_metric, paired_group_bootstrap

METRICS = ("balanced_accuracy", "accuracy", "sensitivity", "specificity")
PROMOTING = ("better", "non-inferior")


@dataclass(frozen=True)
class Comparison:
    outcome: str
    metric: str
    images: int
    patients: int
    candidate: float
    champion: float
    difference: float
    ci_low: float
    ci_high: float
    margin: float
    alpha: float
    resamples: int
    min_images: int = 0
    min_patients: int = 0

    @property
    def promotes(self) -> bool:
        return self.outcome in PROMOTING

    @property
    def summary(self) -> str:
        """One line with the numbers, for reasons, tags and `covid-xray history`."""
        if self.outcome == "insufficient":
            return (
                f"comparison insufficient: {self.images} unseen test images of {self.patients} patients are too "
                f"few for the test to have power (minimum {self.min_images} images of {self.min_patients} patients); "
                "not decided"
            )
        level = round(100 * (1 - self.alpha))
        return (
            f"comparison {self.outcome}: {self.metric} {self.candidate:.3f} vs champion's {self.champion:.3f}, "
            f"difference {self.difference:+.3f} (one-sided {level}% bounds {self.ci_low:+.3f}, {self.ci_high:+.3f}; "
            f"margin {self.margin:.3f}) on {self.images} test images of {self.patients} patients, "
            f"{self.resamples} patient resamples"
        )

    @classmethod
    def insufficient(
        cls, metric: str, images: int, patients: int, margin: float, alpha: float, min_images: int, min_patients: int
    ) -> Comparison:
        """Too few images or patients: decided before either model is scored on them."""
        nan = float("nan")
        return cls(
            "insufficient",
            metric,
            int(images),
            int(patients),
            nan,
            nan,
            nan,
            nan,
            nan,
            float(margin),
            float(alpha),
            0,
            int(min_images),
            int(min_patients),
        )

    def to_record(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def compare(
    truth: np.ndarray,
    candidate: np.ndarray,
    champion: np.ndarray,
    groups: np.ndarray,
    *,
    metric: str = "balanced_accuracy",
    margin: float = 0.02,
    alpha: float = 0.05,
    resamples: int = 2000,
    min_images: int = 50,
    min_patients: int = 30,
    seed: int = 0,
) -> Comparison:
    """Compare the predicted classes `candidate` and `champion` with the true classes `truth`, row by row.

    All four arrays are aligned (one row per test image); `groups` are the patient groups to resample."""
    truth, candidate, champion, groups = (np.asarray(a) for a in (truth, candidate, champion, groups))
    if not len(truth) == len(candidate) == len(champion) == len(groups):
        raise ValueError(
            f"unaligned comparison: {len(truth)} labels, {len(candidate)} candidate and "
            f"{len(champion)} champion predictions, {len(groups)} groups"
        )
    if metric not in METRICS:
        raise ValueError(f"unknown comparison metric {metric!r}; known: {list(METRICS)}")
    patients = len(np.unique(groups))

    def result(outcome, cand=np.nan, champ=np.nan, diff=np.nan, low=np.nan, high=np.nan, used=0) -> Comparison:
        numbers = (float(cand), float(champ), float(diff), float(low), float(high), float(margin), float(alpha))
        return Comparison(
            outcome, metric, len(truth), patients, *numbers, int(used), int(min_images), int(min_patients)
        )

    cand, champ = count_metric(truth, candidate, metric), count_metric(truth, champion, metric)
    diff = cand - champ
    if len(truth) < min_images or patients < min_patients or not np.isfinite(diff):
        return result("insufficient", cand, champ, diff)
    # The same patient resamples for both models; a resample without one of the labels has no sensitivity.
    _, _, _, draws = paired_group_bootstrap(truth, candidate, champion, groups, metric, n=resamples, seed=seed)
    if len(draws) < resamples / 2:
        return result("insufficient", cand, champ, diff, used=len(draws))
    low, high = np.percentile(draws, [100 * alpha, 100 * (1 - alpha)])
    if low > 0:
        outcome = "better"
    elif low > -margin:
        outcome = "non-inferior"
    elif high < 0:
        outcome = "inferior"
    else:
        outcome = "inconclusive"
    return result(outcome, cand, champ, diff, low, high, len(draws))
