"""`covid-xray ui`: the MLflow UI on 127.0.0.1 for the project's tracking store.

The MLflow server runs in its own process group, a child of this command: SIGTERM, SIGINT or SIGHUP to this command
stop the whole group (the server and its workers), so that killing the command by its PID frees the port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time

import click

from ..ops.stack import home, runs_table_url, tracking_uri
from .common import fail, load_or_fail

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def default_workers() -> int:
    """One server worker per two cores, at most 4 (MLflow's default is 4 whatever the machine): 1 on 2 cores."""
    return max(1, min(4, (os.cpu_count() or 1) // 2))


def group_gone(group: int, seconds: float = 15.0) -> None:
    """Wait until no process of `group` is left; what still runs after `seconds` is killed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)


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
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1"]
    command += [
        "--port",
        str(port),
        "--workers",
        str(workers or default_workers()),
        "--artifacts-destination",
        artifacts,
    ]
    # MLflow's job runner (seven huey consumers) executes GenAI jobs (scorers, trace roll-ups) this project has none of.
    environment = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"} | dict(os.environ)
    server = subprocess.Popen(command, env=environment, start_new_session=True)  # noqa: S603 - fixed arguments
    stopped_by: list[int] = []

    def stop_server() -> None:
        with contextlib.suppress(ProcessLookupError):  # the server's group has already gone
            os.killpg(server.pid, signal.SIGTERM)

    def on_signal(signum: int, _frame) -> None:
        stopped_by.append(signum)
        stop_server()

    previous = {signum: signal.signal(signum, on_signal) for signum in STOP_SIGNALS}
    try:
        returncode = server.wait()
    finally:
        stop_server()  # workers left behind by a server that died on its own go too
        group_gone(server.pid)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if stopped_by or returncode in (0, -2, -15, 130):  # a signal (Ctrl-C, kill) is how the UI is meant to stop
        return
    fail(f"the MLflow UI stopped with exit code {returncode} (its output is above)", 1)
