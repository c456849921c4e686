"""Helpers for tests that start servers: a free loopback port, a clean environment, the first JSON answer."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from covid_xray.serving.pyfunc import encode_image


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_env(**extra: str) -> dict:
    """A clean environment (no outer ZenML/MLflow settings) whose PATH has this venv's scripts (mlflow execs
    uvicorn)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZENML_", "MLFLOW_"))}
    return env | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"} | extra


def first_answer(server: subprocess.Popen, request, seconds: int, what: str) -> dict:
    """Poll `request` (a urllib Request or URL) until the server answers with JSON, failing if it dies or times out."""
    deadline = time.time() + seconds
    while True:
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())
        except OSError:
            assert server.poll() is None, f"{what} exited"
            assert time.time() < deadline, f"{what} did not answer within {seconds} s"
            time.sleep(2)


def image_request(url: str, paths) -> urllib.request.Request:
    """A POST of the image files themselves, base64-encoded, as the served model takes them."""
    body = json.dumps({"dataframe_split": {"columns": ["image"], "data": [[encode_image(p)] for p in paths]}}).encode()
    return urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})


def alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie, from /proc."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def descendants(pid: int) -> set[int]:
    """Every living process below `pid`, from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # a process that ended while we read
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found
