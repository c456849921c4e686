"""What `covid-xray ui` costs and leaves behind, with its defaults and with MLflow's, side by side in one run.

    python benchmarks/ui_footprint.py [--out benchmarks/ui_footprint.json]

Each setting starts `covid-xray ui` on a free port against the project's tracking store (COVID_XRAY_HOME or
./.covid-xray), then measures: seconds to the first answered page, the processes below the command and their summed
RSS once the page answered, and, after SIGTERM to the command's PID only, the processes still alive 3 s later.
  covid-xray: the command's defaults (one uvicorn worker per two cores, MLflow's job runner off);
  mlflow:     MLflow's defaults through the same command (`--workers 4`, MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {
    "covid-xray": ([], {}),
    "mlflow": (["--workers", "4"], {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true"}),
}


def processes() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, RSS in KiB) for every process, from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE") // 1024
            if fields[0] != "Z":
                found[int(entry.name)] = (int(fields[1]), rss)
        except (OSError, IndexError, ValueError):
            continue  # a process that ended while we read
    return found


def below(pid: int, table: dict[int, tuple[int, int]]) -> set[int]:
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, (parent, _) in table.items() if parent in frontier} - found
        found |= frontier
    return found


def measure(extra: list[str], environment: dict[str, str]) -> dict:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_SERVER_")} | environment
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    start = time.monotonic()
    command = subprocess.Popen(
        [sys.executable, "-m", "covid_xray.cli", "ui", "--port", str(port), *extra],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()  # noqa: S310 - loopback
            break
        except OSError:
            if command.poll() is not None or time.monotonic() - start > 180:
                raise SystemExit(f"covid-xray ui {' '.join(extra)} did not answer") from None
            time.sleep(0.25)
    first_page = time.monotonic() - start
    time.sleep(5)  # workers and job consumers that start after the first page
    table = processes()
    tree = below(command.pid, table)
    rss = sum(table[pid][1] for pid in tree | {command.pid}) / 1024
    command.send_signal(signal.SIGTERM)
    command.wait(timeout=60)
    time.sleep(3)
    left = sorted(pid for pid in tree if pid in processes())
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return {
        "first_page_s": round(first_page, 1),
        "processes_below_command": len(tree),
        "rss_mb": round(rss),
        "left_after_sigterm": len(left),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks/ui_footprint.json"))
    args = parser.parse_args()
    results = {name: measure(*setting) for name, setting in SETTINGS.items()}
    record = {
        "date": datetime.now(UTC).date().isoformat(),
        "command": "python benchmarks/ui_footprint.py",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "results": results,
        "ratio_rss": round(results["covid-xray"]["rss_mb"] / results["mlflow"]["rss_mb"], 2),
    }
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
