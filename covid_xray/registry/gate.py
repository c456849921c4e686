"""The promotion gate: the evidence a candidate is judged on, and the decision.

A candidate becomes `champion` when its data passed validation, it passes the thresholds of the config, and it is not
worse than the current champion in a paired non-inferiority test on the test images neither has trained on
(covid_xray.evaluation.comparison). The candidate of a pipeline run is chosen on validation or leave-one-source-out
data, never on test data (`select_candidate`). Moving the aliases is `aliases.apply_decision`.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from ..config import PromotionConfig
from ..evaluation.comparison import Comparison, compare
from ..evaluation.metrics import MIN_SCORE_SD
from ..evaluation.report import load_test_predictions

PREDICTION_COLUMNS = ("sha256", "path", "label", "group_id", "predicted")

Scorer = Callable[[str, list[str]], np.ndarray]


class PromotionError(RuntimeError):
    """The gate cannot decide (missing evidence); the message says what is missing and where."""


@dataclass
class Decision:
    promote: bool
    reasons: list[str] = field(default_factory=list)
    evidence: dict = field(default_factory=dict)

    @property
    def summary(self) -> str:
        return ("promoted: " if self.promote else "not promoted: ") + "; ".join(self.reasons)


def decide(
    metrics: dict[str, float],
    config: PromotionConfig,
    comparison: Comparison | None = None,
    data_problem: str | None = None,
) -> Decision:
    """Apply the thresholds, then the comparison with the champion (None: there is no champion yet).

    `data_problem` (see `data_validation_problem`) refuses before any number is looked at."""
    if data_problem:
        return Decision(False, [data_problem])
    reasons: list[str] = []
    passed, evidence = True, dict[str, Any]()
    spread = metrics.get("score_sd")
    if spread is not None and spread < MIN_SCORE_SD:  # it answers the same whatever the image
        passed = False
        reasons.append(f"collapsed: p(covid) varies by {spread:.4f} (sd) over the test images < {MIN_SCORE_SD}")
    for name, minimum in (
        ("accuracy", config.min_accuracy),
        ("sensitivity", config.min_sensitivity),
        ("specificity", config.min_specificity),
    ):
        value = metrics.get(f"{name}_ci_low" if config.use_lower_ci else name, float("nan"))
        label = f"{name}{' (lower 95% CI)' if config.use_lower_ci else ''}"
        evidence[f"test_{name}{'_ci_low' if config.use_lower_ci else ''}"] = value
        if not value >= minimum:  # nan fails too
            passed = False
            reasons.append(f"{label} {value:.3f} < {minimum:.3f}")
        else:
            reasons.append(f"{label} {value:.3f} >= {minimum:.3f}")
    if config.min_loso_balanced_accuracy is not None:
        value = metrics.get("loso_balanced_accuracy", float("nan"))
        evidence["loso_balanced_accuracy"] = value
        verb = ">=" if value >= config.min_loso_balanced_accuracy else "<"
        passed = passed and verb == ">="
        reasons.append(
            f"leave-one-source-out balanced accuracy {value:.3f} {verb} {config.min_loso_balanced_accuracy:.3f}"
        )
    if comparison is None:
        reasons.append("no champion yet")
    else:
        passed = passed and comparison.promotes
        reasons.append(comparison.summary)
        evidence["comparison"] = comparison.to_record()
    return Decision(passed, reasons, evidence)


def training_keys(client: MlflowClient, version) -> set[str]:
    """Content keys of the images the model version was trained or validated on (its pipeline run's manifest).

    Raises PromotionError with the reason when they cannot be read: an empty set would silently let the
    champion be scored on its own training images."""
    run_id = (version.tags or {}).get("run_id") or version.run_id
    where = f"version {version.version} of {version.name!r}"
    if not run_id:
        raise PromotionError(f"{where} has no run: its training images are unknown")
    parent = client.get_run(run_id).data.tags.get("mlflow.parentRunId")
    if not parent:
        raise PromotionError(f"{where}: run {run_id} has no pipeline (parent) run, so no data/manifest.csv")
    try:
        text = mlflow.artifacts.load_text(f"runs:/{parent}/data/manifest.csv")
    except (MlflowException, OSError) as error:
        raise PromotionError(f"{where}: cannot read data/manifest.csv of pipeline run {parent}: {error}") from None
    frame = pd.read_csv(io.StringIO(text), dtype={"sha256": str})
    missing = {"sha256", "split"} - set(frame.columns)
    if missing:
        raise PromotionError(f"{where}: data/manifest.csv of pipeline run {parent} lacks column(s) {sorted(missing)}")
    return set(frame.loc[frame["split"] != "test", "sha256"])


def candidate_predictions(run_id: str) -> pd.DataFrame:
    """The candidate's logged test predictions (evaluation/test_predictions.csv), checked for the needed columns."""
    try:
        return load_test_predictions(run_id, PREDICTION_COLUMNS)
    except LookupError as error:
        raise PromotionError(str(error)) from error


def data_validation_problem(run, pipeline_run) -> str | None:
    """Why the data a variant run was trained on cannot be trusted, or None when its pipeline run's validation passed.

    The validate step tags the pipeline (parent) run `validation`; a run without that record is not trusted either,
    so `covid-xray promote --run` cannot promote a model of data that failed (severity warn) or was never checked."""
    if pipeline_run is None:
        return f"run {run.info.run_id} has no pipeline run, so no data validation record"
    outcome, parent = pipeline_run.data.tags.get("validation"), pipeline_run.info.run_id
    if outcome == "passed":
        return None
    if outcome is None:
        return f"pipeline run {parent} has no data validation record"
    return f"data validation {outcome} on pipeline run {parent}"


def compare_with_champion(
    client: MlflowClient,
    frame: pd.DataFrame,
    champion,
    config: PromotionConfig,
    scorer: Scorer,
) -> tuple[Comparison, list[str]]:
    """The comparison on the candidate's test rows the champion has not trained on, and notes on what was used.

    `scorer(model URI, image paths)` gives the champion's predicted class of each image (`promote.champion_predictions`
    runs the champion's own pyfunc)."""
    notes = []
    try:
        seen = training_keys(client, champion)
        unseen = frame[~frame["sha256"].isin(seen)]
        notes.append(f"{len(frame) - len(unseen)} of {len(frame)} test images left out: champion trained on them")
    except PromotionError as error:
        if config.unknown_champion_split != "compare_all":
            raise PromotionError(
                f"cannot compare with the champion: {error} (set promotion.unknown_champion_split: "
                "compare_all to compare on all test images)"
            ) from None
        unseen = frame
        notes.append(
            f"champion's training images unknown ({error}): compared on all {len(frame)} test images "
            "(promotion.unknown_champion_split: compare_all)"
        )
    truth, groups, predicted = (unseen[c].to_numpy() for c in ("label", "group_id", "predicted"))
    patients = len(np.unique(groups))
    if len(unseen) < config.min_compared_images or patients < config.min_compared_patients:
        # Not worth re-scoring the champion: the test cannot have power on so few.
        found = Comparison.insufficient(
            config.comparison_metric,
            len(unseen),
            patients,
            config.non_inferiority_margin,
            config.alpha,
            config.min_compared_images,
            config.min_compared_patients,
        )
        return found, notes
    champion_labels = scorer(f"models:/{champion.name}/{champion.version}", list(unseen["path"]))
    found = compare(
        truth,
        predicted,
        np.asarray(champion_labels),
        groups,
        metric=config.comparison_metric,
        margin=config.non_inferiority_margin,
        alpha=config.alpha,
        resamples=config.bootstrap_resamples,
        min_images=config.min_compared_images,
        min_patients=config.min_compared_patients,
    )
    return found, notes


def select_candidate(
    client: MlflowClient, run_ids: list[str], config: PromotionConfig, parent_metrics: dict
) -> tuple[str, str]:
    """The variant run to gate, and why: chosen on validation or leave-one-source-out data, never on test data."""
    metric = config.comparison_metric

    runs = {run_id: client.get_run(run_id) for run_id in run_ids}
    variants = {run_id: run.data.tags.get("model.variant", run_id) for run_id, run in runs.items()}
    unscored = [
        variants[r] for r, run in runs.items() if not np.isfinite(run.data.metrics.get(f"val_{metric}", np.nan))
    ]
    if unscored:
        raise PromotionError(
            f"no validation {metric} (val_{metric}) was recorded for {unscored}: "
            "the candidate is chosen on validation data, so every variant needs it"
        )

    def validation(run_id: str) -> tuple[float, float]:
        metrics = runs[run_id].data.metrics
        return metrics[f"val_{metric}"], metrics.get("val_roc_auc", -1.0)

    if config.selection == "validation":
        best = max(run_ids, key=validation)
        return (
            best,
            f"{variants[best]}: best validation {metric} ({validation(best)[0]:.3f}) of {len(run_ids)} variants",
        )
    recorded = {run_id: parent_metrics.get(f"loso_mean_balanced_accuracy.{variants[run_id]}") for run_id in run_ids}
    missing = [variants[r] for r, value in recorded.items() if value is None or not np.isfinite(value)]
    if missing:
        raise PromotionError(
            f"promotion.selection is loso but no leave-one-source-out mean was recorded for {missing} "
            "(listed in evaluation.loso_models? a held-out source with both labels?)"
        )
    loso = {run_id: float(value) for run_id, value in recorded.items() if value is not None}
    top = max(loso.values())
    tied = [r for r in run_ids if loso[r] >= top - config.selection_tolerance]
    best = max(tied, key=validation)
    ranking = ", ".join(f"{variants[r]} {loso[r]:.3f}" for r in sorted(run_ids, key=lambda r: -loso[r]))
    tie = f"; tie within {config.selection_tolerance:.3f} broken by validation {metric}" if len(tied) > 1 else ""
    return best, f"{variants[best]}: best mean leave-one-source-out balanced accuracy ({ranking}){tie}"
