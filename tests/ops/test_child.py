"""A server run by `covid_xray.ops.child.run_server` dies with the command, workers included, and its start-up noise
stays off the user's terminal while its real lines reach it."""

import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from fixtures import ROOT
from servers import alive

from covid_xray.ops.child import port_problem, run_server, server_environment

# A "server" that forks a worker, as uvicorn does, writes one TensorFlow start-up line and one real line, and waits.
SERVER = textwrap.dedent(
    """
    import os, sys, time
    folder = sys.argv[1]
    if os.fork() == 0:
        open(f"{folder}/worker.pid", "w").write(str(os.getpid()))
        time.sleep(600)
    sys.stderr.write("I0000 00:00:1796416766.867364   30338 cudart_stub.cc:31] Could not find cuda drivers\\n")
    sys.stderr.write("server: listening\\n")
    sys.stderr.flush()
    open(f"{folder}/server.pid", "w").write(str(os.getpid()))
    time.sleep(600)
    """
)
COMMAND = textwrap.dedent(
    """
    import sys
    from covid_xray.ops.child import run_server, server_environment
    print(run_server([sys.executable, "-c", sys.argv[1], sys.argv[2]], server_environment(), quiet=True))
    """
)


def test_sigterm_to_the_command_stops_server_and_worker_and_only_noise_is_dropped(tmp_path):
    command = subprocess.Popen(
        [sys.executable, "-c", COMMAND, SERVER, str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while not ((tmp_path / "server.pid").exists() and (tmp_path / "worker.pid").exists()):
        assert command.poll() is None and time.time() < deadline, command.communicate()
        time.sleep(0.1)
    time.sleep(0.5)  # the relay writes the server's lines
    pids = [int((tmp_path / f"{name}.pid").read_text()) for name in ("server", "worker")]
    command.send_signal(signal.SIGTERM)  # to the command's PID only, as `kill PID` does
    out, err = command.communicate(timeout=30)
    try:
        assert command.returncode == 0 and out.split() == ["None"]  # stopped as meant: not a failure
        assert not [pid for pid in pids if alive(pid)]  # the forked worker too, not just the server
        assert "server: listening" in err and "cudart_stub" not in err
    finally:
        for pid in pids:
            if alive(pid):
                subprocess.run(["kill", "-9", str(pid)], check=False)


def test_a_busy_port_is_one_line_and_the_venv_scripts_come_first_on_path(monkeypatch):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert port_problem("127.0.0.1", port) == f"cannot serve on 127.0.0.1:{port}: Address already in use"
    assert port_problem("127.0.0.1", port) is None
    monkeypatch.setenv("PATH", "/usr/bin")  # a shell where the venv is not activated
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")  # the user's own setting wins over the command's default
    environment = server_environment(TF_CPP_MIN_LOG_LEVEL="2", PYTHONWARNINGS="ignore")
    assert environment["PATH"] == f"{Path(sys.executable).parent}:/usr/bin"  # mlflow starts `uvicorn` by name
    assert environment["TF_CPP_MIN_LOG_LEVEL"] == "0" and environment["PYTHONWARNINGS"] == "ignore"


def test_a_server_that_fails_on_its_own_returns_its_exit_code():
    assert run_server([sys.executable, "-c", "import sys; sys.exit(3)"], server_environment()) == 3
    assert run_server([sys.executable, "-c", "pass"], server_environment()) is None
