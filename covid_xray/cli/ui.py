"""`covid-xray ui`: the MLflow UI on 127.0.0.1 for the project's tracking store."""

from __future__ import annotations

import socket
import subprocess
import sys

import click

from ..ops.stack import home, runs_table_url, tracking_uri
from .common import fail, load_or_fail


@click.command()
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--config", "config_path", default=None, help="Take the tracking URI from this config.")
def ui(port: int, config_path: str | None) -> None:
    """Open the MLflow UI on 127.0.0.1 for the project's tracking store."""
    config = load_or_fail(config_path) if config_path else None
    uri = tracking_uri(config.tracking.uri if config else None)
    artifacts = str(home() / "mlartifacts")
    with socket.socket() as probe:  # a port MLflow cannot use is one line here, not a server traceback
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as error:
            fail(f"cannot serve on 127.0.0.1:{port}: {error.strerror or error}", 2)
    click.echo(f"MLflow UI on http://127.0.0.1:{port} (tracking store {uri})")
    click.echo(
        f"Model runs: {runs_table_url(uri, config.tracking.experiment if config else 'covid-xray-training', port)}"
    )
    server = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [
            sys.executable,
            "-m",
            "mlflow",
            "ui",
            "--backend-store-uri",
            uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--artifacts-destination",
            artifacts,
        ],
        check=False,
    )
    if server.returncode not in (0, -2, 130):  # an interrupt (Ctrl-C) is how the UI is meant to stop
        fail(f"the MLflow UI stopped with exit code {server.returncode} (its output is above)", 1)
