"""A load test of the served model: `covid-xray serve` on 127.0.0.1, real X-rays POSTed by concurrent clients.

    python benchmarks/serve_load.py [--alias challenger] [--seconds 60] [--clients 1,4,16]
        [--images ../shared/datasets/ieee8023/images] [--out benchmarks/serve_load.json]

Starts `covid-xray serve` (the project's tracking store: COVID_XRAY_HOME or ./.covid-xray) on a free loopback port and
waits for its first answer. Then, for each client count in turn, that many threads POST one real image each per
request (base64, as `docs/serving.md` shows) for `--seconds`, bounded by the time and by `--max-requests`. Recorded per
phase: requests, errors (anything but HTTP 200 with one `ok` or `refused` answer), throughput, p50/p95/p99 latency,
and the server's RSS (the serve command and every process below it) sampled once a second.

Then the hostile requests, each sent once and expected to get a 4xx with a reason, never a 5xx, a hang or a crash:
a 50 MB body, malformed JSON, JSON without `dataframe_split`, a wrong column, and a row that is not base64 (that one
is a 200 with a `refused` row: the served model answers every row). Last, one valid request checks the server still
answers. Writes the JSON record and prints it. Nothing here leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


def rss_mb(pid: int) -> float:
    """Summed RSS of `pid` and every process below it, in MB, from /proc."""
    parents, rss = {}, {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry.name)], rss[int(entry.name)] = int(fields[1]), int(fields[21]) * page
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = {pid}, {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - tree
        tree |= frontier
    return sum(rss.get(p, 0) for p in tree) / 2**20


def body_of(path: Path) -> bytes:
    encoded = base64.b64encode(path.read_bytes()).decode()
    return json.dumps({"dataframe_split": {"columns": ["image"], "data": [[encoded]]}}).encode()


def post(url: str, body: bytes, timeout: float = 120) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback only
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def answered(status: int, content: bytes) -> bool:
    if status != 200:
        return False
    try:
        (row,) = json.loads(content)["predictions"]
    except (ValueError, KeyError, TypeError):
        return False
    return row.get("status") in ("ok", "refused")


def phase(url: str, bodies: list[bytes], clients: int, seconds: float, max_requests: int, server_pid: int) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    issued = [0]

    def client(offset: int) -> None:
        index = offset
        while time.monotonic() < stop:
            with lock:
                if issued[0] >= max_requests:
                    return
                issued[0] += 1
            started = time.monotonic()
            try:
                status, content = post(url, bodies[index % len(bodies)])
                ok = answered(status, content)
                problem = None if ok else f"HTTP {status}: {content[:200]!r}"
            except OSError as error:
                problem = f"{type(error).__name__}: {error}"
            with lock:
                if problem:
                    errors.append(problem)
                else:
                    latencies.append(time.monotonic() - started)
            index += clients

    memory: list[float] = []
    sampler_stop = threading.Event()

    def sample() -> None:
        while not sampler_stop.wait(1.0):
            memory.append(rss_mb(server_pid))

    sampler = threading.Thread(target=sample, daemon=True)
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    began = time.monotonic()
    sampler.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    sampler_stop.set()
    sampler.join()
    times = np.asarray(latencies) * 1000
    return {
        "clients": clients,
        "seconds": round(elapsed, 1),
        "requests": len(latencies) + len(errors),
        "errors": len(errors),
        "error_examples": errors[:3],
        "requests_per_s": round(len(latencies) / elapsed, 2),
        "latency_ms": {q: round(float(np.percentile(times, int(q[1:]))), 1) for q in ("p50", "p95", "p99")}
        if len(times)
        else None,
        "rss_mb": {
            "start": round(memory[0]) if memory else None,
            "end": round(memory[-1]) if memory else None,
            "max": round(max(memory)) if memory else None,
        },
    }


def hostile(url: str, image: bytes) -> dict:
    cases = {
        "50 MB body": b'{"dataframe_split": {"columns": ["image"], "data": [["' + b"A" * (50 * 2**20) + b'"]]}}',
        "malformed JSON": b'{"dataframe_split": {"columns": ["image"], "data": [["abc"',
        "no dataframe_split": b'{"something": 1}',
        "wrong column": json.dumps({"dataframe_split": {"columns": ["picture"], "data": [["abc"]]}}).encode(),
        "row not base64": json.dumps(
            {"dataframe_split": {"columns": ["image"], "data": [["%%% not base64"]]}}
        ).encode(),
    }
    results = {}
    for name, body in cases.items():
        started = time.monotonic()
        try:
            status, content = post(url, body, timeout=300)
            results[name] = {
                "status": status,
                "seconds": round(time.monotonic() - started, 2),
                "answer": content[:300].decode(errors="replace"),
            }
        except OSError as error:
            results[name] = {"status": None, "error": f"{type(error).__name__}: {error}"}
    status, content = post(url, image)
    results["valid request afterwards"] = {"status": status, "answered": answered(status, content)}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--alias", default="challenger")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--max-requests", type=int, default=100_000)
    parser.add_argument("--images", default=str(ROOT.parent / "shared/datasets/ieee8023/images"))
    parser.add_argument("--count", type=int, default=64, help="distinct images sent in turn")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/serve_load.json"))
    args = parser.parse_args()
    paths = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[: args.count]
    bodies = [body_of(p) for p in paths]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/invocations"
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "covid-xray"), "serve", "--alias", args.alias, "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    started = time.monotonic()
    try:
        while True:
            try:
                if answered(*post(url, bodies[0], timeout=30)):
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() - started > 300:
                raise SystemExit("covid-xray serve did not answer")
            time.sleep(1)
        ready = time.monotonic() - started
        phases = [
            phase(url, bodies, int(n), args.seconds, args.max_requests, server.pid) for n in args.clients.split(",")
        ]
        attacks = hostile(url, bodies[0])
        server_alive = server.poll() is None
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    record = {
        "date": datetime.now(UTC).date().isoformat(),
        "command": "python benchmarks/serve_load.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "model": f"covid-xray@{args.alias}",
        "images": len(paths),
        "first_answer_s": round(ready, 1),
        "phases": phases,
        "hostile": attacks,
        "server_alive_after": server_alive,
        "server_exit_code": server.returncode,
    }
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
