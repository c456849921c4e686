"""Pick the best variant on validation data, register it, and promote it only if it passes the gate."""

from typing import Annotated

import mlflow
import numpy as np
from mlflow import MlflowClient
from zenml import get_step_context, step
from zenml.enums import ModelStages
from zenml.logger import get_logger

from covid_xray.config import RunConfig
from covid_xray.model_card import log_model_card
from covid_xray.promotion import best_run, promote_run
from covid_xray.training import Split

logger = get_logger(__name__)


@step(experiment_tracker=True, enable_cache=False)
def promote_model(test_set: Split, validation_passed: bool, config: RunConfig) -> Annotated[str, "promotion_decision"]:
    if not validation_passed:  # severity 'warn' let the run train; a model from invalid data is never registered
        logger.warning("Data validation failed: no model is registered from this run")
        mlflow.set_tag("promotion.decision", "not registered: data validation failed")
        return "not registered: data validation failed"
    client = MlflowClient()
    parent = mlflow.active_run().info.run_id
    children = client.search_runs([mlflow.active_run().info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent}'")  # fmt: skip
    run_ids = [r.info.run_id for r in children if "model_uri" in r.data.tags]
    if not run_ids:
        raise RuntimeError("no evaluated model runs found under this pipeline run")
    candidate = best_run(client, run_ids)
    logger.info("Candidate: %s (best validation balanced accuracy of %d variants)",
                client.get_run(candidate).data.tags.get("model.variant"), len(run_ids))  # fmt: skip
    version, decision = promote_run(client, candidate, test_set.images, test_set.labels, test_set.keys,
                                    config.data.classes, config.promotion)  # fmt: skip
    logger.info("Model %s version %s %s", config.promotion.model_name, version, decision.summary)
    log_model_card(client, config.promotion.model_name, version)
    mlflow.set_tags({"promotion.candidate_run": candidate, "promotion.version": version,
                     "promotion.decision": decision.summary[:5000]})  # fmt: skip
    # The ZenML model version of this pipeline run mirrors the registry: production for the champion.
    zenml_model = get_step_context().model
    zenml_model.log_metadata({"mlflow_registered_model": config.promotion.model_name, "mlflow_version": version,
                              "mlflow_run_id": candidate, "promotion": decision.summary[:2000]})  # fmt: skip
    zenml_model.set_stage(ModelStages.PRODUCTION if decision.promote else ModelStages.STAGING, force=True)
    return f"{config.promotion.model_name} v{version} {decision.summary}"
