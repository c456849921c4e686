"""`covid-xray ui` as a user runs and stops it: the server answers, and SIGTERM to the command's PID (not its process
group) stops every process it started and frees the port."""

import contextlib
import os
import signal
import socket
import subprocess
import sys

from fixtures import ROOT
from servers import alive, descendants, first_answer, free_port, server_env

from covid_xray.cli.ui import default_workers


def test_sigterm_to_the_command_stops_the_server_and_its_workers_and_frees_the_port(tmp_path):
    port = free_port()
    command = subprocess.Popen(
        [sys.executable, "-m", "covid_xray.cli", "ui", "--port", str(port)],
        cwd=ROOT,
        env=server_env(COVID_XRAY_HOME=str(tmp_path / "home")),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    started: set[int] = set()
    try:
        url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default"
        assert first_answer(command, url, 120, "covid-xray ui")["experiment"]["name"] == "Default"
        started = descendants(command.pid)
        # The server and its uvicorn worker(s) only: MLflow's GenAI job runner and its consumers are not started.
        assert 2 <= len(started) <= 1 + default_workers(), started
        command.send_signal(signal.SIGTERM)
        assert command.wait(timeout=30) == 0
    finally:
        started |= descendants(command.pid)
        left = [pid for pid in started if alive(pid)]
        for pid in [command.pid, *left]:  # a failed test leaves no server behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left after SIGTERM to covid-xray ui: {left}"
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a server binds: TIME_WAIT is not "held"
        probe.bind(("127.0.0.1", port))  # raises if a process still listens on it
