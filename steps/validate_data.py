"""Great Expectations checks of the split manifest; `error` severity stops the run before training."""

from typing import Annotated

import mlflow
import pandas as pd
from zenml import step
from zenml.logger import get_logger

from covid_xray.config import RunConfig
from covid_xray.data.validation import validate_manifest

logger = get_logger(__name__)


class DataValidationError(RuntimeError):
    """The data failed validation with severity 'error'."""


@step(experiment_tracker=True)
def validate_data(
    split_manifest: pd.DataFrame, drops: pd.DataFrame, config: RunConfig
) -> Annotated[bool, "validation_passed"]:
    report = validate_manifest(split_manifest, config.validation, config.data.findings, drops)
    logger.info("Data validation:\n%s", report.summary().to_string(index=False))
    mlflow.log_text(report.to_html(), "validation/report.html")
    mlflow.log_text(report.summary().to_csv(index=False), "validation/summary.csv")
    mlflow.set_tag("validation", "passed" if report.success else f"failed ({config.validation.severity})")
    if not report.success:
        if config.validation.severity == "error":
            raise DataValidationError(report.message())
        logger.warning(report.message())
    return report.success
