"""`covid-xray serve`: a registered model behind MLflow's scoring server (POST /invocations), on 127.0.0.1 by default.

The model is resolved as `predict` resolves it (`covid_xray.registry.lookup`: the champion, or `--alias` /
`--model-version`, with the same messages when there is none) and downloaded; uvicorn then runs MLflow's scoring app
for it behind a request-body limit (`covid_xray.serving.scoring_app`), in the environment `mlflow models serve` gives
it. The tracking URI and PATH are set here, TensorFlow's start-up lines are dropped, and the server dies with the
command (`covid_xray.ops.child`)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import click
import mlflow
from mlflow import MlflowClient
from mlflow.pyfunc import scoring_server

from ..ops.child import port_problem, run_server, server_environment
from ..registry.lookup import find_version
from ..serving import scoring_app
from ..serving.errors import ModelNotFound
from .common import fail, store


@click.command()
@click.option("--model-name", default=None, help="Registered model [default: the config's, else covid-xray].")
@click.option("--alias", default=None, help="Registry alias to serve [default: champion].")
@click.option("--model-version", default=None, help="Registered version number to serve instead of an alias.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to listen on; 0.0.0.0 opens it to other machines, without any login.",
)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 16), help="Server worker processes.")
@click.option(
    "--max-body-mb",
    default=scoring_app.DEFAULT_MAX_BODY_MB,
    show_default=True,
    type=click.IntRange(1, 1024),
    help="Larger request bodies are answered 413 before the model reads them.",
)
@click.option("--config", "config_path", default=None, help="Take the tracking URI and model name from this config.")
def serve(
    model_name: str | None,
    alias: str | None,
    model_version: str | None,
    port: int,
    host: str,
    workers: int,
    max_body_mb: int,
    config_path: str | None,
) -> None:
    """Serve a registered model over HTTP: POST base64 images to /invocations.

    The champion by default, or the version picked by --alias or --model-version; the answers are those of
    `covid-xray predict --json` (docs/serving.md)."""
    if alias is not None and model_version is not None:
        fail("--alias and --model-version both pick the model: give only one", 2)
    config, uri = store(config_path)
    model_name = model_name or (config.promotion.model_name if config else "covid-xray")
    try:
        version = find_version(MlflowClient(), model_name, alias, model_version).version
    except ModelNotFound as error:
        fail(str(error))
    problem = port_problem(host, port)
    if problem:
        fail(problem, 2)
    which = f"version {version}" if model_version else f"version {version} (@{alias or 'champion'})"
    click.echo(f"Serving {model_name} {which} on http://{host}:{port}/invocations (tracking store {uri})")
    with tempfile.TemporaryDirectory(prefix="covid-xray-serve-") as folder:
        local = mlflow.artifacts.download_artifacts(f"models:/{model_name}/{version}", dst_path=folder)
        _, mlflow_environment = scoring_server.get_cmd(local)  # its environment; the command is ours
        command = [sys.executable, "-m", "uvicorn", "--host", host, "--port", str(port), "--workers", str(workers)]
        command += ["--app-dir", str(Path(scoring_app.__file__).parent), "scoring_app:app"]
        # Defaults a user's own environment overrides: TensorFlow's and Python's warnings stay off the server's log.
        environment = server_environment(TF_CPP_MIN_LOG_LEVEL="2", PYTHONWARNINGS="ignore")
        # What MLflow adds for its app (the model's path, the request timeout), and the body limit.
        environment |= {key: value for key, value in mlflow_environment.items() if os.environ.get(key) != value}
        environment[scoring_app.MAX_BODY_ENV] = str(max_body_mb)
        failed = run_server(command, environment, quiet=True)
    if failed is not None:
        fail(f"the scoring server stopped with exit code {failed} (its output is above)", 1)
