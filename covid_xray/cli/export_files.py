"""The work of `covid-xray export`, loaded once the arguments were checked (see `cli.export`): the registered version
is resolved as `predict` resolves it, loaded, and its network and records written."""

from __future__ import annotations

from pathlib import Path

import click
from mlflow import MlflowClient

from ..registry.lookup import find_version
from ..serving.export import export_model
from ..serving.predict import ModelNotFound, Predictor
from .common import fail


def write_export(name: str, alias: str | None, model_version: str | None, fmt: str, output: str) -> None:
    try:
        found = find_version(MlflowClient(), name, alias, model_version)
        picked_by = None if model_version else alias or "champion"
        predictor = Predictor.from_registered(name, found.version, picked_by)
    except ModelNotFound as error:
        fail(str(error))
    origin = {
        "model_name": name,
        "version": str(found.version),
        "alias": picked_by,
        "model_uri": predictor.model_uri,
        "run_id": found.run_id,
    }
    manifest = export_model(predictor.model, Path(output), fmt, origin)
    files = sorted(path.name for path in manifest.parent.iterdir())
    click.echo(f"{predictor.description} exported as {fmt} to {manifest.parent}: {', '.join(files)}")
