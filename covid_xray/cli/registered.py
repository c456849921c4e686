"""The registered version a command's options pick (`--model-name`, `--alias`, `--model-version`, `--config`), or the
lookup's one line and exit 1: `serve`, `build-image` and `card` resolve their model here. Imports MLflow, not Keras."""

from __future__ import annotations

from mlflow import MlflowClient

from ..registry.lookup import find_version
from ..serving.errors import ModelNotFound
from .common import fail, model_name_of, store


def picked_version(
    model_name: str | None, alias: str | None, model_version: str | None, config_path: str | None
) -> tuple[str, str, str]:
    """(registered model name, version, tracking URI) of the version the options pick (`find_version`)."""
    config, uri = store(config_path)
    name = model_name_of(config, model_name)
    try:
        version = find_version(MlflowClient(), name, alias, model_version).version
    except ModelNotFound as error:
        fail(str(error))
    return name, version, uri
