"""Pick the candidate variant by the configured selection, register it, and promote it only if it passes the gate."""

from typing import Annotated

import mlflow
from mlflow import MlflowClient
from zenml import get_step_context, step
from zenml.client import Client
from zenml.logger import get_logger

from covid_xray.config import RunConfig
from covid_xray.evaluation.report import DESCRIPTION
from covid_xray.ops.lifecycle import follow_aliases
from covid_xray.registry.gate import select_candidate
from covid_xray.registry.model_card import log_model_card
from covid_xray.registry.promote import pipeline_run_description, promote_run

logger = get_logger(__name__)


@step(experiment_tracker=True, enable_cache=False)
def promote_model(validation_passed: bool, config: RunConfig) -> Annotated[str, "promotion_decision"]:
    if not validation_passed:  # severity 'warn' let the run train; a model from invalid data is never registered
        logger.warning("Data validation failed: no model is registered from this run")
        mlflow.set_tags(
            {
                "promotion.decision": "not registered: data validation failed",
                DESCRIPTION: "Pipeline run: data validation failed; no model was registered (see data/ artifacts).",
            }
        )
        return "not registered: data validation failed"
    client = MlflowClient()
    active = mlflow.active_run()
    if active is None:
        raise RuntimeError("the promote step runs inside the pipeline's MLflow run (experiment_tracker=True)")
    parent = client.get_run(active.info.run_id)
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    run_ids = [r.info.run_id for r in children if "model_uri" in r.data.tags]
    if not run_ids:
        raise RuntimeError("no evaluated model runs found under this pipeline run")
    candidate, why = select_candidate(client, run_ids, config.promotion, parent.data.metrics)
    logger.info("Candidate: %s", why)
    name = config.promotion.model_name
    version, decision = promote_run(client, candidate, config.promotion, selection=f"candidate {why}")
    logger.info("Model %s version %s %s", name, version, decision.summary)
    log_model_card(client, name, version)
    mlflow.set_tags(
        {
            DESCRIPTION: pipeline_run_description(parent, children, why, f"{name} v{version}", decision.summary),
            "promotion.candidate_run": candidate,
            "promotion.selection": why[:5000],
            "promotion.version": version,
            "promotion.decision": decision.summary[:5000],
        }
    )
    # This pipeline run's ZenML model version mirrors the registered version; its stage follows the MLflow aliases.
    get_step_context().model.log_metadata(
        {
            "mlflow_registered_model": name,
            "mlflow_version": version,
            "mlflow_run_id": candidate,
            "promotion": decision.summary[:2000],
        }
    )
    logger.info("ZenML stages now: %s", follow_aliases(client, name, Client()))
    return f"{name} v{version} {decision.summary}"
