"""Promote the model of one evaluated run: register it, gate it, move the aliases (the pipeline's promote step and
`covid-xray promote` both call `promote_run`)."""

from __future__ import annotations

import mlflow
import numpy as np
from mlflow import MlflowClient

from ..config import PromotionConfig
from ..evaluation.comparison import Comparison
from ..evaluation.report import DESCRIPTION
from ..serving.predict import Prediction, Predictor
from .aliases import apply_decision, current_champion
from .gate import (
    Decision,
    PromotionError,
    Scorer,
    candidate_predictions,
    compare_with_champion,
    data_validation_problem,
    decide,
)


def champion_predictions(model_uri: str, paths: list[str]) -> np.ndarray:
    """The champion's predicted class of each image file, with its own recorded transform and threshold."""
    results = Predictor.from_uri(model_uri).predict_files(paths)
    failed = [f"{path}: {result}" for path, result in zip(paths, results, strict=True) if isinstance(result, Exception)]
    if failed:
        raise PromotionError(
            f"champion {model_uri} could not score {len(failed)} test image(s): {'; '.join(failed[:5])}"
        )
    return np.asarray([result.label for result in results if isinstance(result, Prediction)])


def promote_run(
    client: MlflowClient,
    run_id: str,
    config: PromotionConfig,
    force_reason: str | None = None,
    scorer: Scorer | None = None,
    selection: str | None = None,
) -> tuple[str, Decision]:
    """Register the run's model, gate it against the data validation record, the thresholds and the champion, move
    aliases. (version, decision)"""
    run = client.get_run(run_id)
    parent = run.data.tags.get("mlflow.parentRunId")
    pipeline_run = client.get_run(parent) if parent else None
    data_problem = data_validation_problem(run, pipeline_run)
    metrics = {k.removeprefix("test_"): v for k, v in run.data.metrics.items() if k.startswith("test_")}
    variant = run.data.tags.get("model.variant")
    loso = pipeline_run.data.metrics.get(f"loso_mean_balanced_accuracy.{variant}") if pipeline_run else None
    if loso is not None:
        metrics["loso_balanced_accuracy"] = loso
    champion = current_champion(client, config.model_name)
    comparison: Comparison | None = None
    notes: list[str] = []
    if champion is not None and champion.run_id != run_id and not data_problem:
        comparison, notes = compare_with_champion(
            client, candidate_predictions(run_id), champion, config, scorer or champion_predictions
        )
    decision = decide(metrics, config, comparison, data_problem)
    decision.reasons[:0] = [r for r in (selection,) if r] + notes
    if force_reason and not decision.promote:
        decision = Decision(
            True, [*decision.reasons, f"forced: {force_reason}"], {**decision.evidence, "forced": force_reason}
        )
    existing = [
        v for v in client.search_model_versions(f"name = '{config.model_name}'") if v.tags.get("run_id") == run_id
    ]
    version = (
        existing[0]
        if existing
        else mlflow.register_model(
            run.data.tags["model_uri"],
            config.model_name,
            tags={"run_id": run_id, "data.manifest_hash": run.data.tags.get("data.manifest_hash", "")},
        )
    )
    decision = apply_decision(
        client,
        config.model_name,
        str(version.version),
        decision,
        str(champion.version) if champion else None,
        config,
        run_id,
    )
    client.set_tag(run_id, "promotion", decision.summary[:5000])
    described = run.data.tags.get(DESCRIPTION, "").split("\n\nRegistered as ")[0]  # a second gate replaces the first
    outcome = f"Registered as {config.model_name} v{version.version}: {decision.summary}"
    client.set_tag(run_id, DESCRIPTION, f"{described}\n\n{outcome}"[:5000] if described else outcome[:5000])
    return str(version.version), decision


def pipeline_run_description(parent, children: list, selection: str, registered: str, decision: str) -> str:
    """What a pipeline (parent) run did, for the MLflow UI's description: its variants, data, candidate, decision."""
    variants = sorted(r.data.tags["model.variant"] for r in children if "model.variant" in r.data.tags)
    data = parent.data.tags.get("data.manifest_hash") or next(
        (r.data.tags["data.manifest_hash"] for r in children if "data.manifest_hash" in r.data.tags), "?"
    )
    return (
        f"Pipeline run: {len(variants)} model variant(s) trained and evaluated ({', '.join(variants)}) on data "
        f"manifest {data[:8]}. Candidate {selection}.\n\n{registered}: {decision}"
    )
