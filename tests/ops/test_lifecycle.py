"""ZenML model stages follow the MLflow aliases after `covid-xray promote` and `covid-xray rollback`."""

import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow import MlflowClient
from registry_runs import pipeline_run, wrong

ROOT = Path(__file__).resolve().parents[2]
NAME = "lifecycle-test"
pytestmark = pytest.mark.slow


def test_zenml_stages_match_mlflow_aliases_after_promote_and_rollback(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    uri = f"sqlite:///{home / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    try:
        mlflow.set_experiment("lifecycle")
        first, second = pipeline_run(wrong(10)), pipeline_run(wrong(5, 1))
    finally:
        mlflow.set_tracking_uri(None)
    raw = yaml.safe_load((ROOT / "configs/tiny.yaml").read_text())
    # More images than the 200 test images required: the comparison says it has too few to decide, so the forced
    # promotion below needs no re-scoring of the champion.
    raw["promotion"] |= {"model_name": NAME, "min_compared_images": 10_000}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZENML_", "MLFLOW_"))}
    env |= {"COVID_XRAY_HOME": str(home), "MLFLOW_TRACKING_URI": uri, "ZENML_ANALYTICS_OPT_IN": "false"}
    client = MlflowClient(uri)

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "covid_xray.cli", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        return done.stdout

    def stages() -> dict[str, str]:
        line = cli("history", "--model-name", NAME).strip().splitlines()[-1]
        return dict((v, s) for v, s in re.findall(r"version (\d+) (\w+)", line))

    def aliases() -> dict[str, str]:
        return {
            a: str(client.get_model_version_by_alias(NAME, a).version)
            for a in ("champion", "previous")
            if a in client.get_registered_model(NAME).aliases
        }

    cli("promote", "--run", first, "--config", str(config))
    assert aliases() == {"champion": "1"} and stages() == {"1": "production"}
    out = cli("promote", "--run", second, "--config", str(config), "--force", "radiologist review")
    assert "comparison insufficient" in out and "forced: radiologist review" in out
    assert aliases() == {"champion": "2", "previous": "1"} and stages() == {"1": "archived", "2": "production"}
    cli("rollback", "--model-name", NAME, "--reason", "bad week")
    assert aliases() == {"champion": "1", "previous": "2"} and stages() == {"1": "production", "2": "archived"}
    history = cli("history", "--model-name", NAME)
    assert [line.split()[1] for line in history.splitlines() if line[:4].isdigit()] == [
        "promote",
        "promote",
        "rollback",
    ]
    assert "- bad week" in history and "forced=radiologist review" in history
