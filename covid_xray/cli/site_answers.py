"""The work of `covid-xray evaluate`, loaded once SITE was read (see `cli.evaluate`): the model answers the site's
images, the report is written, and it is logged to MLflow as an evaluation run linked to the model version."""

from __future__ import annotations

import math
from pathlib import Path

import click
import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient

from ..evaluation.site import site_report, write_report
from ..labels import POSITIVE, REST
from ..serving.predict import ModelNotFound
from .answers import registered_predictor
from .common import fail

EXPERIMENT = "covid-xray-site-evaluations"


def answer_site(
    site: str,
    rows: pd.DataFrame,
    drops: pd.DataFrame,
    name: str,
    alias: str | None,
    model_version: str | None,
    folder: Path,
) -> None:
    client = MlflowClient()
    try:
        found, predictor = registered_predictor(name, alias, model_version)
    except ModelNotFound as error:
        fail(str(error))
    answers = predictor.predict_files(list(rows["path"]))
    refused = {path: str(a) for path, a in zip(rows["path"], answers, strict=True) if isinstance(a, ValueError)}
    kept = [not isinstance(a, ValueError) for a in answers]
    if not any(kept):
        fail(f"{site}: the model refused every image ({len(refused)}), e.g. {next(iter(refused.items()))}")
    scored = [a for a in answers if not isinstance(a, ValueError)]
    flags = [a.out_of_distribution for a in scored]
    report = site_report(
        rows[kept].reset_index(drop=True),
        np.asarray([a.covid_probability for a in scored]),
        None if flags[0] is None else np.asarray(flags, dtype=bool),
        predictor.classes if len(predictor.classes) == 2 else [POSITIVE, REST],  # three classes: covid vs the rest
        predictor.threshold,
        predictor.description,
        refused,
        drops,
    )
    json_path, html_path = write_report(report, folder)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
    run_name = f"site: {Path(site).name} · {name} v{found.version}"
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        mlflow.set_tags(
            {
                "site": str(Path(site).resolve()),
                "model_name": name,
                "model_version": str(found.version),
                "model_uri": predictor.model_uri,
                "mlflow.note.content": f"{predictor.description} evaluated on {site}: see report.html",
            }
        )
        recorded = report["at_recorded_threshold"]
        mlflow.log_metrics(
            {
                f"site_{k}": v
                for k, v in recorded.items()
                if isinstance(v, float) and math.isfinite(v) and "_ci_" not in k and k != "threshold"
            }
        )
        mlflow.log_artifact(str(json_path))
        mlflow.log_artifact(str(html_path))
    client.set_model_version_tag(name, str(found.version), f"site_evaluation.{run.info.run_id[:8]}", str(site))
    images = report["images"]
    click.echo(
        f"{predictor.description} on {site}: {images['answered']} images of {images['patients']} patients, "
        f"accuracy {recorded['accuracy']:.3f} [{recorded['accuracy_ci_low']:.2f}, {recorded['accuracy_ci_high']:.2f}] "
        f"at the recorded threshold {recorded['threshold']:.3f}; report: {html_path} (MLflow run {run.info.run_id[:8]} "
        f"in {EXPERIMENT})"
    )
