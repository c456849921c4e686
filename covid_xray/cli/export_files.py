"""The work of `covid-xray export`, loaded once the arguments were checked (see `cli.export`): the registered version
is resolved as `predict` resolves it, loaded, and its network and records written."""

from __future__ import annotations

from pathlib import Path

import click

from ..serving.export import export_model
from ..serving.predict import ModelNotFound
from .answers import registered_predictor
from .common import fail


def write_export(name: str, alias: str | None, model_version: str | None, fmt: str, output: str) -> None:
    try:
        found, predictor = registered_predictor(name, alias, model_version)
    except ModelNotFound as error:
        fail(str(error))
    origin = {
        "model_name": name,
        "version": str(found.version),
        "alias": None if model_version else alias or "champion",
        "model_uri": predictor.model_uri,
        "run_id": found.run_id,
    }
    manifest = export_model(predictor.model, Path(output), fmt, origin)
    files = sorted(path.name for path in manifest.parent.iterdir())
    click.echo(f"{predictor.description} exported as {fmt} to {manifest.parent}: {', '.join(files)}")
