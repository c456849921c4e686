"""Read every configured source in its public layout, decode once, deduplicate; report every drop."""

import json
from typing import Annotated

import mlflow
import pandas as pd
from zenml import step
from zenml.logger import get_logger

from covid_xray.config import RunConfig
from covid_xray.data.ingest import drop_summary, ingest
from covid_xray.data.provenance import REGISTRY, load_registry, source_records
from covid_xray.data.rebalance import composition

logger = get_logger(__name__)


@step(experiment_tracker=True)
def ingest_data(config: RunConfig) -> tuple[Annotated[pd.DataFrame, "manifest"], Annotated[pd.DataFrame, "drops"]]:
    manifest, drops = ingest(config.data, config.validation)
    # Where each source came from (repository, commit, origin, licence): the model card lists it.
    records = source_records(config.data, load_registry() if REGISTRY.is_file() else None)
    mlflow.log_text(json.dumps(records, indent=2), "data/sources.json")
    summary = drop_summary(drops)
    logger.info("Kept %d images; dropped %d items:\n%s", len(manifest), len(drops), summary.to_string(index=False))
    mlflow.log_text(drops.to_csv(index=False), "data/drops.csv")
    mlflow.log_text(summary.to_csv(index=False), "data/drop_summary.csv")
    if not manifest.empty:
        table = composition(manifest)
        logger.info("Images by source and label after deduplication:\n%s", table.to_string())
        mlflow.log_text(table.to_csv(), "data/composition_ingested.csv")
    mlflow.log_metrics({"data.images_kept": len(manifest), "data.items_dropped": len(drops)})
    return manifest, drops
