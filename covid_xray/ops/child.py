"""A server run as the command's child that dies with it (`covid-xray ui`, `covid-xray serve`).

The server gets its own process group. SIGTERM, SIGINT or SIGHUP to the command stop the whole group (the server and
the workers it forked), and the command returns only once none of them is left, so that killing the command by its
PID frees the port. With `quiet`, the server's stderr passes through a filter that drops TensorFlow's C++ start-up
lines (`covid_xray.ops.quiet.is_startup_noise`); every other line reaches the user.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from .quiet import is_startup_noise

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
STOPPED_CODES = (0, -signal.SIGINT, -signal.SIGTERM, 128 + signal.SIGINT)  # an exit, or a stop by Ctrl-C or kill


def port_problem(host: str, port: int) -> str | None:
    """Why a server could not listen on host:port (in use, not allowed), or None: one line, not a server traceback."""
    with socket.socket() as probe:
        # As the server will (uvicorn sets it): a port left in TIME_WAIT by a server just stopped is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            return f"cannot serve on {host}:{port}: {error.strerror or error}"
    return None


def server_environment(**settings: str) -> dict[str, str]:
    """This environment with `settings` as defaults, and this interpreter's scripts first on PATH: MLflow starts
    `uvicorn` by name, which fails (`exec: uvicorn: not found`) when the venv is not activated."""
    scripts = str(Path(sys.executable).parent)
    return settings | dict(os.environ) | {"PATH": os.pathsep.join([scripts, os.environ.get("PATH", "")])}


def run_server(command: Sequence[str], env: dict[str, str], quiet: bool = False) -> int | None:
    """Run `command` until it exits or the command is told to stop. Returns the server's exit code when it failed on
    its own, or None when it ended as a server is meant to: by a signal to the command, by Ctrl-C, or with code 0."""
    server = subprocess.Popen(  # noqa: S603 - the callers pass this interpreter and fixed arguments
        list(command), env=env, start_new_session=True, stderr=subprocess.PIPE if quiet else None
    )
    relay = None
    if quiet and server.stderr is not None:
        relay = threading.Thread(target=_relay_without_noise, args=(server.stderr,), daemon=True)
        relay.start()
    stopped_by: list[int] = []

    def on_signal(signum: int, _frame) -> None:
        stopped_by.append(signum)
        _stop_group(server.pid)

    previous = {signum: signal.signal(signum, on_signal) for signum in STOP_SIGNALS}
    try:
        returncode = server.wait()
    finally:
        _stop_group(server.pid)  # workers left behind by a server that died on its own go too
        group_gone(server.pid)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if relay is not None:
        relay.join(timeout=5)
    return None if stopped_by or returncode in STOPPED_CODES else returncode


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


def _stop_group(group: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group has already gone
        os.killpg(group, signal.SIGTERM)


def _relay_without_noise(stream) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace")
        if not is_startup_noise(line):
            sys.stderr.write(line)
            sys.stderr.flush()
