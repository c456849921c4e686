"""Patient-level split, rebalancing of the training split, and each split by reference to its cached pixels."""

from typing import Annotated

import mlflow
import pandas as pd
from zenml import step
from zenml.logger import get_logger

from covid_xray.config import RunConfig
from covid_xray.data.dataset import manifest_hash, prepare, split_of
from covid_xray.data.stream import Split

logger = get_logger(__name__)


@step(experiment_tracker=True)
def prepare_data(
    manifest: pd.DataFrame, config: RunConfig
) -> tuple[
    Annotated[pd.DataFrame, "split_manifest"],
    Annotated[Split, "train_set"],
    Annotated[Split, "val_set"],
    Annotated[Split, "test_set"],
    Annotated[str, "manifest_hash"],
]:
    if manifest.empty:
        raise ValueError("no images left after ingest: see the drops table")
    prepared = prepare(manifest, config)
    split = prepared.manifest
    logger.info(
        "Training split before rebalancing (Cramér's V source×label %.3f):\n%s",
        prepared.cramers_v_before,
        prepared.composition_before.to_string(),
    )
    logger.info(
        "Training split after rebalancing (Cramér's V %.3f):\n%s",
        prepared.cramers_v_after,
        prepared.composition_after.to_string(),
    )
    mlflow.log_metrics(
        {"data.cramers_v_before": prepared.cramers_v_before, "data.cramers_v_after": prepared.cramers_v_after}
    )
    mlflow.log_text(prepared.composition_before.to_csv(), "data/composition_train_before.csv")
    mlflow.log_text(prepared.composition_after.to_csv(), "data/composition_train_after.csv")
    mlflow.log_text(
        split.groupby(["split", "source", "label"]).size().rename("count").reset_index().to_csv(index=False),
        "data/composition_splits.csv",
    )
    mlflow.log_text(split.drop(columns=["path"]).to_csv(index=False), "data/manifest.csv")
    digest = manifest_hash(split)
    mlflow.set_tag("data.manifest_hash", digest)
    return (
        split,
        split_of(prepared.train_rows, config),
        split_of(split[split["split"] == "val"], config),
        split_of(split[split["split"] == "test"], config),
        digest,
    )
