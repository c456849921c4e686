"""Time of the patient-group bootstrap intervals of one evaluation, next to a per-resample scikit-learn loop.

    python benchmarks/intervals.py [--patients 250] [--resamples 1000]

An evaluation-sized test split (1 to 3 images per patient, as after deduplication), generated: the point is the
cost of `covid_metrics` (8 metrics with group intervals) against one metric computed resample by resample.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from sklearn.metrics import balanced_accuracy_score  # noqa: E402
from timing import best_seconds  # noqa: E402  (benchmarks/ is the script's folder)

from covid_xray.evaluation.metrics import covid_metrics, group_bootstrap_indices  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=250)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 4, args.patients)
    groups = np.repeat(np.arange(args.patients), sizes)
    labels = np.where(np.repeat(rng.random(args.patients) < 0.45, sizes), "covid", "normal")
    p_covid = np.clip(rng.normal(0.35, 0.2, len(labels)) + (labels == "covid") * 0.3, 0, 1)
    proba = np.column_stack([p_covid, 1 - p_covid])
    vectorised = best_seconds(
        lambda: covid_metrics(labels, proba, ["covid", "normal"], groups, n=args.resamples), 5, warm_up=False
    )
    y, y_hat = labels == "covid", p_covid >= 0.5
    resamples = group_bootstrap_indices(groups, args.resamples, 0)
    loop = best_seconds(lambda: [balanced_accuracy_score(y[i], y_hat[i]) for i in resamples], 2, warm_up=False)
    print(f"{len(labels)} images of {args.patients} patients, {args.resamples} resamples")
    print(f"covid_metrics, all 8 group intervals: {vectorised:.3f} s")
    print(f"scikit-learn loop, balanced accuracy only: {loop:.3f} s")


if __name__ == "__main__":
    main()
