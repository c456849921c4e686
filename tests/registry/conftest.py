from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient


@pytest.fixture
def client(tmp_path: Path, monkeypatch) -> MlflowClient:
    """A fresh SQLite tracking store and registry, experiment `gate`, set as the tracking URI for the test."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment(experiment_name="gate")
    yield MlflowClient()
    mlflow.set_tracking_uri(None)
