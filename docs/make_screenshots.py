"""Screenshots of the MLflow UI as `covid-xray ui` opens it: the experiment's runs and one model run's page.

    python docs/make_screenshots.py [--out docs] [--chromium chromium]

Starts `covid-xray ui` on a free loopback port against the project's tracking store (COVID_XRAY_HOME or ./.covid-xray),
takes two headless Chromium screenshots at 1600×1000 (Debian package `chromium`) and stops the UI with SIGTERM:
  mlflow-experiment.png: the link `covid-xray ui` prints (the runs table in model-training mode);
  mlflow-run.png:        the newest model run of covid-xray-training (a run with a logged model).
"""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from covid_xray.ops.stack import runs_table_url, tracking_uri  # noqa: E402 - after the path is set


def shoot(chromium: str, url: str, path: Path) -> None:
    subprocess.run(  # noqa: S603 - a fixed browser command on a loopback URL
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1600,1000",
            "--virtual-time-budget=20000",
            f"--screenshot={path}",
            url,
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ROOT / "docs"))
    parser.add_argument("--chromium", default="chromium")
    args = parser.parse_args()
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("covid-xray-training")
    if experiment is None:
        raise SystemExit("no covid-xray-training experiment in the tracking store: run `covid-xray run` first")
    [run] = client.search_runs(
        [experiment.experiment_id], "tags.model_uri != ''", order_by=["attributes.start_time DESC"], max_results=1
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ui = subprocess.Popen(  # noqa: S603 - this interpreter's covid-xray
        [str(Path(sys.executable).parent / "covid-xray"), "ui", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()  # noqa: S310 - loopback
                break
            except OSError:
                if ui.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("covid-xray ui did not answer") from None
                time.sleep(1)
        out = Path(args.out)
        shoot(args.chromium, runs_table_url(uri, "covid-xray-training", port), out / "mlflow-experiment.png")
        run_url = (
            f"http://127.0.0.1:{port}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}"
            "?workflowType=machine_learning"
        )
        shoot(args.chromium, run_url, out / "mlflow-run.png")
        print(f"{out / 'mlflow-experiment.png'}\n{out / 'mlflow-run.png'} (run {run.info.run_name})")
    finally:
        ui.send_signal(signal.SIGTERM)
        ui.wait(timeout=60)


if __name__ == "__main__":
    main()
