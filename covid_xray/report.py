"""Reading runs back from MLflow: the side-by-side comparison and a run's test split."""

from __future__ import annotations

import io

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient


def _with_ci(run, name: str) -> str:
    metrics = run.data.metrics
    if f"test_{name}" not in metrics:
        return "-"
    low, high = metrics.get(f"test_{name}_ci_low"), metrics.get(f"test_{name}_ci_high")
    interval = f" [{low:.2f}, {high:.2f}]" if low is not None and high is not None else ""
    return f"{metrics[f'test_{name}']:.3f}{interval}"


def compare_runs(experiment: str, count: int) -> pd.DataFrame:
    """The last `count` model-variant runs of `experiment`, newest first."""
    client = MlflowClient()
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return pd.DataFrame()
    runs = client.search_runs([found.experiment_id], filter_string="tags.`model.variant` != ''",
                              order_by=["attributes.start_time DESC"], max_results=count)  # fmt: skip
    return pd.DataFrame([{
        "run": run.info.run_id[:8],
        "variant": run.data.tags.get("model.variant", ""),
        "data": run.data.tags.get("data.manifest_hash", "")[:8],
        "accuracy": _with_ci(run, "accuracy"),
        "sensitivity": _with_ci(run, "sensitivity"),
        "specificity": _with_ci(run, "specificity"),
        "roc_auc": _with_ci(run, "roc_auc"),
        "train_s": f"{run.data.metrics.get('train_seconds', float('nan')):.0f}",
        "promotion": run.data.tags.get("promotion", "not a candidate")[:40],
    } for run in runs])  # fmt: skip


def test_split_of_run(client: MlflowClient, run_id: str, classes: list[str]) -> tuple[list[str], np.ndarray]:
    """Content keys and class indices of the test images a run was evaluated on."""
    text = mlflow.artifacts.load_text(f"runs:/{run_id}/evaluation/test_predictions.csv")
    frame = pd.read_csv(io.StringIO(text), dtype={"sha256": str})
    labels = frame["label"].map({c: i for i, c in enumerate(classes)}).to_numpy(np.int32)
    return list(frame["sha256"]), labels
