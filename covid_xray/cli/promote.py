"""`covid-xray promote`: gate and promote the model of one run by hand, with the pipeline's checks."""

from __future__ import annotations

import sys

import click
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from ..ops.stack import prepare_environment
from ..registry.aliases import LeaseBusy, LeaseLost
from ..registry.gate import PromotionError
from ..registry.model_card import log_model_card
from ..registry.promote import promote_run
from .common import DEFAULT_CONFIG, fail, load_or_fail, verbose_option
from .registry import follow_aliases_or_fail


@click.command()
@click.option("--run", "run_id", required=True, help="MLflow run id of an evaluated model variant.")
@click.option("--config", "config_path", default=DEFAULT_CONFIG, show_default=True)
@click.option("--force", "force_reason", default=None, help="Promote even if the gate fails; give the reason.")
@verbose_option
def promote(run_id: str, config_path: str, force_reason: str | None, verbose: bool) -> None:
    """Gate and promote the model of an MLflow run by hand.

    The same checks as the pipeline's promote step: data validation, thresholds, the comparison with the champion."""
    config = load_or_fail(config_path)
    prepare_environment(config.tracking.uri)
    client = MlflowClient()
    try:
        why = f"candidate chosen by hand: covid-xray promote --run {run_id}"
        version, decision = promote_run(client, run_id, config.promotion, force_reason=force_reason, selection=why)
    except (MlflowException, PromotionError, LeaseBusy, LeaseLost, OSError, LookupError, ValueError) as error:
        fail(f"cannot promote run {run_id}: {error}")
    log_model_card(client, config.promotion.model_name, version)
    click.echo(f"{config.promotion.model_name} version {version}: {decision.summary}")
    follow_aliases_or_fail(client, config.promotion.model_name)
    if not decision.promote:
        sys.exit(1)
