"""Reading runs back from MLflow: the side-by-side comparison and a run's test split."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient
from sklearn.metrics import roc_curve

from ..labels import POSITIVE, as_outputs

DESCRIPTION = "mlflow.note.content"  # the tag MLflow's UI shows as a run's description


def with_interval(metrics: dict[str, float], name: str) -> str:
    """`value [low, high]` of `test_<name>` with its logged 95% interval (by patient group where it logged those)."""
    if f"test_{name}" not in metrics:
        return "-"
    low, high = metrics.get(f"test_{name}_ci_low"), metrics.get(f"test_{name}_ci_high")
    interval = f" [{low:.2f}, {high:.2f}]" if low is not None and high is not None else ""
    return f"{metrics[f'test_{name}']:.3f}{interval}"


def model_run_description(
    variant: str, kind: str, metrics: dict[str, float], threshold: float, rule: str, images: dict[str, int], data: str
) -> str:
    """What a model run is and how it scored, for the MLflow UI's description (the promote step adds its decision).

    `metrics` are keyed `test_<name>` as logged; `images` counts the train, val and test images."""
    counts = ", ".join(f"{n} {split}" for split, n in images.items())
    scores = ", ".join(
        f"{name.replace('_', ' ')} {with_interval(metrics, name)}"
        for name in ("accuracy", "sensitivity", "specificity", "roc_auc")
    )
    return (
        f"Model variant **{variant}** ({kind}), data {data} ({counts} images). Test at threshold {threshold:.3f} "
        f"({rule}, chosen on validation), 95% intervals by patient group: {scores}."
    )


def compare_runs(experiment: str, count: int) -> pd.DataFrame:
    """The last `count` model-variant runs of `experiment`, newest first, with their 95% intervals and threshold.

    Runs logged before operating points existed decided at 0.5 and show it."""
    client = MlflowClient()
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return pd.DataFrame()
    runs = client.search_runs(
        [found.experiment_id],
        filter_string="tags.model_uri != ''",
        order_by=["attributes.start_time DESC"],
        max_results=count,
    )
    return pd.DataFrame(
        [
            {
                "run": run.info.run_id[:8],
                "variant": run.data.tags.get("model.variant", ""),
                "data": run.data.tags.get("data.manifest_hash", "")[:8],
                "accuracy": with_interval(run.data.metrics, "accuracy"),
                "sensitivity": with_interval(run.data.metrics, "sensitivity"),
                "specificity": with_interval(run.data.metrics, "specificity"),
                "balanced_accuracy": with_interval(run.data.metrics, "balanced_accuracy"),
                "roc_auc": with_interval(run.data.metrics, "roc_auc"),
                "threshold": run.data.params.get("operating_point.threshold", "0.5")[:6],
                "train_s": f"{run.data.metrics.get('train_seconds', float('nan')):.0f}",
                "promotion": run.data.tags.get("promotion", "not a candidate"),
            }
            for run in runs
        ]
    )


def load_test_predictions(run_id: str, required: tuple[str, ...] = ()) -> pd.DataFrame:
    """The test predictions an evaluate step logged for `run_id` (sha256, path, source, label, group_id, p_<class>...,
    predicted: the class at the run's operating point); a LookupError names the `required` columns it lacks."""
    text = mlflow.artifacts.load_text(f"runs:/{run_id}/evaluation/test_predictions.csv")
    frame = pd.read_csv(io.StringIO(text), dtype={"sha256": str, "group_id": str, "label": str, "predicted": str})
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise LookupError(
            f"run {run_id}: evaluation/test_predictions.csv lacks column(s) {missing} (has {list(frame.columns)})"
        )
    return frame


# The metrics whose 95% patient-group intervals eval/metrics.json keeps (the results table shows them).
INTERVAL_METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "roc_auc")


LOOKS = (
    "gradcam.border_share",
    "gradcam.border_area_share",
    "shortcut.source_accuracy",
    "shortcut.source_majority_rate",
)


def write_dvc_outputs(
    uri: str, experiment: str, pipeline_run_name: str, folder: str | Path, classes: Sequence[str]
) -> Path:
    """Metrics (JSON) and plot data (CSV) of one pipeline run's model variants, in the layout dvc.yaml declares."""
    mlflow.set_tracking_uri(uri)  # the experiment tracker resets it after the pipeline's steps
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise LookupError(f"no MLflow experiment {experiment!r} at {uri}")
    parents = client.search_runs([found.experiment_id], filter_string=f"tags.`mlflow.runName` = '{pipeline_run_name}'")
    if not parents:
        raise LookupError(f"no MLflow run named {pipeline_run_name!r} in experiment {experiment!r}")
    parent = parents[0]
    children = client.search_runs(
        [found.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    folder = Path(folder)
    data = {k.removeprefix("data."): round(v, 4) for k, v in parent.data.metrics.items() if k.startswith("data.")}
    metrics: dict = {"promotion": parent.data.tags.get("promotion.decision", "none"), "data": data, "models": {}}
    loso: dict = {}
    for run in children:
        variant = run.data.tags.get("model.variant")
        if not variant or "model_uri" not in run.data.tags:
            continue
        metrics["models"][variant] = {
            k.removeprefix("test_"): round(v, 4)
            for k, v in sorted(run.data.metrics.items())
            if k.startswith("test_")
            and "_wilson_" not in k
            and ("_ci_" not in k or k.split("_ci_")[0].removeprefix("test_") in INTERVAL_METRICS)
        }
        # where the model looks and what its features tell apart besides the disease, beside its scores
        metrics["models"][variant] |= {k: round(run.data.metrics[k], 4) for k in LOOKS if k in run.data.metrics}
        mean = parent.data.metrics.get(f"loso_mean_balanced_accuracy.{variant}")
        if mean is not None:
            metrics["models"][variant]["loso_mean_balanced_accuracy"] = round(mean, 4)
            loso[variant] = loso_folds(parent.info.run_id, variant)
        if "operating_point.threshold" in run.data.params:
            metrics["models"][variant]["threshold"] = round(float(run.data.params["operating_point.threshold"]), 4)
        frame = load_test_predictions(run.info.run_id)
        if "predicted" not in frame:
            raise LookupError(
                f"run {run.info.run_id} logged test predictions without the `predicted` column "
                "(the class at its operating point)"
            )
        unknown = sorted(set(frame["predicted"]) - set(classes))
        if unknown:
            raise ValueError(f"run {run.info.run_id} predicted classes {unknown} that are not in {classes}")
        for kind in ("roc", "confusion"):
            (folder / "plots" / kind).mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"actual": as_outputs(frame["label"], classes), "predicted": frame["predicted"]}).to_csv(
            folder / "plots" / "confusion" / f"{variant}.csv", index=False
        )
        fpr, tpr, _ = roc_curve(frame["label"] == POSITIVE, frame[f"p_{POSITIVE}"])
        pd.DataFrame({"fpr": fpr, "tpr": tpr}).to_csv(folder / "plots" / "roc" / f"{variant}.csv", index=False)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    (folder / "loso.json").write_text(json.dumps(loso, indent=2, sort_keys=True))
    return folder / "metrics.json"


def loso_folds(pipeline_run_id: str, variant: str) -> dict[str, dict[str, float]]:
    """{held-out source: its numbers} of one variant's leave-one-source-out table, as the pipeline run logged it."""
    table = pd.read_csv(io.StringIO(mlflow.artifacts.load_text(f"runs:/{pipeline_run_id}/loso/{variant}.csv")))
    columns = [
        "n",
        "n_covid",
        "balanced_accuracy",
        "balanced_accuracy_ci_low",
        "balanced_accuracy_ci_high",
        "sensitivity",
        "specificity",
        "roc_auc",
        "both_labels",
        "ood_flag_rate",
    ]
    return {
        str(row["held_out"]): {c: round(float(row[c]), 4) for c in columns if c in row and pd.notna(row[c])}
        for row in table.to_dict("records")
    }
