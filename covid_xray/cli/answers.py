"""The work of `covid-xray predict`, loaded once its arguments and inputs were checked (see `cli.predict`): load the
model, answer every image, write the answers."""

from __future__ import annotations

import json
import sys

import click
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from ..registry.lookup import find_version
from ..serving.predict import ModelNotFound, Predictor
from ..serving.predict_io import answer_records, summary_line, text_line, write_explanations, write_records
from .common import fail


def answer(
    paths: list[str],
    name: str,
    alias: str | None,
    model_version: str | None,
    run_id: str | None,
    as_json: bool,
    output: str | None,
    explain_dir: str | None,
    batch_size: int,
) -> None:
    """Answer `paths` with the model picked by `run_id`, `model_version` or `alias` (default: the champion)."""
    try:
        if run_id:
            predictor = Predictor.from_run(run_id)
        else:
            _, predictor = registered_predictor(name, alias, model_version)
    except ModelNotFound as error:
        fail(str(error))
    if len(paths) > batch_size and sys.stderr.isatty():
        with click.progressbar(length=len(paths), label="Predicting", file=sys.stderr) as bar:
            answers = predictor.predict_files(paths, batch_size=batch_size, progress=bar.update)
    else:
        answers = predictor.predict_files(paths, batch_size=batch_size)
    records = answer_records(paths, answers, predictor.description, predictor.model_uri)
    failures = [r for r in records if r["status"] == "error"]
    for record in failures:
        click.echo(f"covid-xray: error: {record['path']}: {record['error']}", err=True)
    answered = [r for r in records if r["status"] == "ok"]
    if explain_dir and answered:
        overlays = write_explanations(predictor, [r["path"] for r in answered], explain_dir)
        for record, png in zip(answered, overlays, strict=True):
            record["explanation"] = png
    if output:
        write_records(records, output)
        click.echo(f"{summary_line(records)}, by {predictor.description}: {output}")
    else:
        for record in records:
            if record["status"] != "error":  # errors went to stderr above
                click.echo(json.dumps(record) if as_json else text_line(record))
    # Every input answered (out-of-distribution ones too: they carry the flag): 0; any refused or unread input: 1.
    if len(answered) < len(records):
        sys.exit(1)


def registered_predictor(name: str, alias: str | None, model_version: str | None) -> tuple[ModelVersion, Predictor]:
    """The registered version `model_version`, or the one under `alias` (default: the champion), and its model loaded,
    described with the alias that picked it; ModelNotFound with the lookup's message otherwise."""
    found = find_version(MlflowClient(), name, alias, model_version)
    return found, Predictor.from_registered(name, found.version, None if model_version else alias or "champion")
