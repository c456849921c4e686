"""`covid-xray compare`: the last model runs side by side."""

from __future__ import annotations

import shutil
import textwrap

import click

from ..evaluation.report import compare_runs
from .common import fail, store


@click.command()
@click.option("-n", "count", default=10, show_default=True, type=click.IntRange(1), help="How many recent model runs.")
@click.option("--experiment", default=None, help="MLflow experiment [default: the config's, else covid-xray-training].")
@click.option("--config", "config_path", default=None, help="Take the tracking URI and experiment from this config.")
def compare(count: int, experiment: str | None, config_path: str | None) -> None:
    """Print the last N model runs side by side.

    Test metrics with 95% CIs, the threshold and the data version of each, then each run's promotion decision in
    full, wrapped to the terminal."""
    config, _ = store(config_path)
    experiment = experiment or (config.tracking.experiment if config else "covid-xray-training")
    table = compare_runs(experiment, count)
    if table.empty:
        fail(f"no model runs in experiment {experiment!r} yet: run `covid-xray run` first")
    click.echo(table.drop(columns="promotion").to_string(index=False))
    click.echo("\nPromotion:")
    width = max(60, shutil.get_terminal_size().columns)
    for run in table.itertuples():
        head = f"  {run.run} {run.variant}: "
        click.echo(textwrap.fill(str(run.promotion), width, initial_indent=head, subsequent_indent=" " * len(head)))
