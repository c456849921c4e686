"""Reading runs back: the `compare` table and the DVC outputs, from a real MLflow store (SQLite in a temporary
folder)."""

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from covid_xray.evaluation.decision import OperatingPoint
from covid_xray.evaluation.metrics import covid_metrics
from covid_xray.evaluation.report import compare_runs, write_dvc_outputs

CLASSES = ["covid", "normal"]


@pytest.fixture
def store(tmp_path: Path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("report")
    yield uri
    mlflow.set_tracking_uri(None)


def log_evaluated_variant(variant: str, operating_point: OperatingPoint, logged: dict | None = None) -> dict:
    """A model-variant run as the evaluate step logs it: metrics with patient intervals, threshold, predictions."""
    labels = np.array(["covid"] * 6 + ["normal"] * 6)
    p_covid = np.array([0.9, 0.8, 0.45, 0.42, 0.2, 0.1, 0.44, 0.3, 0.2, 0.1, 0.1, 0.05])
    proba = np.column_stack([p_covid, 1 - p_covid])
    groups = np.array(["a", "a", "b", "c", "c", "d", "e", "e", "f", "g", "h", "h"])
    metrics = covid_metrics(labels, proba, CLASSES, groups, operating_point.threshold)
    with mlflow.start_run(run_name=variant, nested=True):
        mlflow.set_tags({"model.variant": variant, "model_uri": f"models:/fake-{variant}"})
        mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items() if np.isfinite(v)} | (logged or {}))
        mlflow.log_params({"operating_point.threshold": operating_point.threshold})
        frame = pd.DataFrame(
            {
                "sha256": [f"{i:02d}" for i in range(12)],
                "path": "x.png",
                "source": "s",
                "label": labels,
                "group_id": groups,
                "p_covid": p_covid,
                "p_normal": 1 - p_covid,
                "predicted": operating_point.labels(proba, CLASSES),
            }
        )
        mlflow.log_text(frame.to_csv(index=False), "evaluation/test_predictions.csv")
    return metrics


def test_dvc_outputs_use_the_recorded_predictions_and_compare_shows_the_patient_intervals(store, tmp_path: Path):
    with mlflow.start_run(run_name="pipeline-1"):
        low = log_evaluated_variant("low-threshold", OperatingPoint(0.4, "youden"))
        looks = {"gradcam.border_share": 0.7093, "shortcut.source_accuracy": 0.84}  # logged by the evaluate step
        log_evaluated_variant("default", OperatingPoint(), looks)
        mlflow.log_metrics({"data.images_kept": 12, "loso_mean_balanced_accuracy.default": 0.61})
        folds = pd.DataFrame(
            {"held_out": ["s", "t"], "n": [5, 7], "balanced_accuracy": [0.6, 0.62], "both_labels": [True, True]}
        )
        mlflow.log_text(folds.to_csv(index=False), "loso/default.csv")
    written = write_dvc_outputs(store, "report", "pipeline-1", tmp_path / "eval", CLASSES)
    assert json.loads(written.read_text())["data"] == {"images_kept": 12}
    assert json.loads(written.read_text())["models"]["default"]["loso_mean_balanced_accuracy"] == 0.61
    assert json.loads((tmp_path / "eval/loso.json").read_text()) == {
        "default": {
            "s": {"n": 5.0, "balanced_accuracy": 0.6, "both_labels": 1.0},
            "t": {"n": 7.0, "balanced_accuracy": 0.62, "both_labels": 1.0},
        }
    }
    models = json.loads(written.read_text())["models"]
    assert models["default"]["gradcam.border_share"] == 0.7093 and models["default"]["shortcut.source_accuracy"] == 0.84
    assert models["low-threshold"]["threshold"] == 0.4 and models["low-threshold"]["sensitivity"] == 0.6667
    assert models["default"]["sensitivity"] == 0.3333
    assert not any("_wilson_" in k for k in models["default"])  # the patient-group intervals of the table's metrics
    assert {k for k in models["default"] if "_ci_" in k} == {
        f"{m}_ci_{end}"
        for m in ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "roc_auc")
        for end in ("low", "high")
    }
    assert models["default"]["sensitivity_ci_low"] <= 0.3333 <= models["default"]["sensitivity_ci_high"]
    confusion = pd.read_csv(tmp_path / "eval/plots/confusion/low-threshold.csv")
    # At 0.4, the images at 0.45, 0.42 (covid) and 0.44 (normal) are called covid, which argmax would not do.
    assert ((confusion["actual"] == "covid") & (confusion["predicted"] == "covid")).sum() == 4
    assert ((confusion["actual"] == "normal") & (confusion["predicted"] == "covid")).sum() == 1

    table = compare_runs("report", 10).set_index("variant")
    shown = table.loc["low-threshold"]
    interval = f"[{low['sensitivity_ci_low']:.2f}, {low['sensitivity_ci_high']:.2f}]"
    assert shown["sensitivity"] == f"{low['sensitivity']:.3f} {interval}"
    assert low["sensitivity_ci_low"] != low["sensitivity_wilson_low"]  # the table shows the patient interval
    assert shown["threshold"] == "0.4" and table.loc["default", "threshold"] == "0.5"
