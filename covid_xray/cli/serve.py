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
from mlflow.pyfunc import scoring_server

from ..ops.child import port_problem, run_server, server_environment
from ..ops.serving_image import DEFAULT_BASE, ImageError, build_image, docker_problem, valid_tag
from ..serving import scoring_app
from .common import fail, one_model_choice
from .registered import picked_version


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
    one_model_choice(alias=alias, model_version=model_version)
    model_name, version, uri = picked_version(model_name, alias, model_version, config_path)
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
        environment.pop(scoring_app.MODEL_PATH_ENV, None)  # a serving image's setting: here the model is `local`
        failed = run_server(command, environment, quiet=True)
    if failed is not None:
        fail(f"the scoring server stopped with exit code {failed} (its output is above)", 1)


@click.command("build-image")
@click.option("--model-name", default=None, help="Registered model [default: the config's, else covid-xray].")
@click.option("--alias", default=None, help="Registry alias to put in the image [default: champion].")
@click.option("--model-version", default=None, help="Registered version number instead of an alias.")
@click.option("--tag", default=None, help="Image tag [default: covid-xray/serve:v<version>].")
@click.option("--base", default=DEFAULT_BASE, show_default=True, help="Base image with the pinned requirements.")
@click.option("--config", "config_path", default=None, help="Take the tracking URI and model name from this config.")
def build_image_command(
    model_name: str | None,
    alias: str | None,
    model_version: str | None,
    tag: str | None,
    base: str,
    config_path: str | None,
) -> None:
    """Build a Docker image that serves a registered model as `covid-xray serve` does.

    The image (infra/serving.Dockerfile) runs the same scoring app on port 8080, with the model downloaded from the
    registry; its base is the step image of `infra/docker/build.sh step`. Run it with
    `docker run -p 127.0.0.1:8080:8080 TAG` (docs/serving.md#a-serving-image)."""
    one_model_choice(alias=alias, model_version=model_version)
    if tag is not None and not valid_tag(tag):
        fail(f"--tag {tag!r} is not a Docker image name (lowercase name[:tag], e.g. covid-xray/serve:v3)", 2)
    problem = docker_problem(base)
    if problem:
        fail(f"cannot build a serving image: {problem}", 2)
    model_name, version, uri = picked_version(model_name, alias, model_version, config_path)
    tag = tag or f"covid-xray/serve:v{version}"
    with tempfile.TemporaryDirectory(prefix="covid-xray-image-model-") as folder:
        local = mlflow.artifacts.download_artifacts(f"models:/{model_name}/{version}", dst_path=folder)
        try:
            image = build_image(Path(local), tag, base)
        except ImageError as error:
            fail(str(error))
    click.echo(f"Built {tag} ({image[:19]}): {model_name} version {version} from {uri}, served on port 8080")
    click.echo(f"Run it: docker run --rm -p 127.0.0.1:8080:8080 {tag}")
