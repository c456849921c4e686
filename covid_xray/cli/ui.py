"""`covid-xray ui`: the MLflow UI on 127.0.0.1 for the project's tracking store.

The server is the command's child and dies with it (`covid_xray.ops.child`)."""

from __future__ import annotations

import os
import sys

import click

from ..ops.child import port_problem, run_server, server_environment
from ..ops.stack import home, runs_table_url, tracking_uri
from .common import fail, load_or_fail


def default_workers() -> int:
    """One server worker per two cores, at most 4 (MLflow's default is 4 whatever the machine): 1 on 2 cores."""
    return max(1, min(4, (os.cpu_count() or 1) // 2))


@click.command()
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--workers", default=None, type=click.IntRange(1, 16), help="Server worker processes [default: cores / 2, 1 to 4]."
)
@click.option("--config", "config_path", default=None, help="Take the tracking URI from this config.")
def ui(port: int, workers: int | None, config_path: str | None) -> None:
    """Open the MLflow UI on 127.0.0.1 for the project's tracking store."""
    config = load_or_fail(config_path) if config_path else None
    uri = tracking_uri(config.tracking.uri if config else None)
    problem = port_problem("127.0.0.1", port)
    if problem:
        fail(problem, 2)
    click.echo(f"MLflow UI on http://127.0.0.1:{port} (tracking store {uri})")
    click.echo(
        f"Model runs: {runs_table_url(uri, config.tracking.experiment if config else 'covid-xray-training', port)}"
    )
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--registry-store-uri", uri]
    command += ["--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", str(workers or default_workers())]
    command += ["--artifacts-destination", str(home() / "mlartifacts")]
    # MLflow's job runner (seven huey consumers) executes GenAI jobs (scorers, trace roll-ups) this project has none of.
    # Python's deprecation warnings from the server's libraries are for MLflow's developers, not for the user.
    environment = server_environment(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", PYTHONWARNINGS="ignore")
    failed = run_server(command, environment)
    if failed is not None:
        fail(f"the MLflow UI stopped with exit code {failed} (its output is above)", 1)
