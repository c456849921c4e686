"""Optional: retrain every variant without each source in turn and score the held-out source."""

from typing import Annotated

import pandas as pd
from zenml import step
from zenml.logger import get_logger

from covid_xray.config import RunConfig
from covid_xray.evaluation.loso import fold_models, run_loso

logger = get_logger(__name__)


@step(experiment_tracker=True, enable_cache=False)
def leave_one_source_out(split_manifest: pd.DataFrame, config: RunConfig) -> Annotated[dict, "loso_balanced_accuracy"]:
    results = run_loso(config, fold_models(config), split_manifest, parent_name=None)
    for name, (table, mean) in results.items():
        logger.info(
            "%s leave-one-source-out (mean balanced accuracy %.3f):\n%s",
            name,
            mean,
            table.round(3).to_string(index=False),
        )
    return {name: mean for name, (_, mean) in results.items()}
