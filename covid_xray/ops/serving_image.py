"""A Docker image that serves one registered model (`covid-xray build-image`), from infra/serving.Dockerfile.

The build context is made here: the MLflow model folder (downloaded by the caller) and the scoring app `covid-xray
serve` runs (covid_xray/serving/scoring_app.py), so the image answers as `covid-xray serve` does, body limit included.
Its base is the project's step image (infra/docker/build.sh step), which holds the pinned requirements: the build
itself then only copies the model. Docker and the base image are checked first, each with the command that fixes it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..serving import scoring_app

DOCKERFILE = Path(__file__).resolve().parents[2] / "infra" / "serving.Dockerfile"
# Docker's reference grammar, without a digest: [registry[:port]/]lowercase/path[:tag]
TAG = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$"
)
DEFAULT_BASE = "covid-xray/step:cpu"


class ImageError(RuntimeError):
    """An image that cannot be built; the message says why and what to do."""


def valid_tag(tag: str) -> bool:
    """Whether `tag` is an image name Docker accepts."""
    return len(tag) <= 255 and TAG.match(tag) is not None


def docker(*args: str, timeout: int = 60) -> subprocess.CompletedProcess:
    """`docker ARGS` (the docker on PATH), output captured. The legacy builder works with any dockerd, without the
    buildx plugin (as in infra/docker/build.sh)."""
    environment = os.environ | {"DOCKER_BUILDKIT": os.environ.get("DOCKER_BUILDKIT", "0")}
    executable = shutil.which("docker") or "docker"
    try:
        return subprocess.run(  # noqa: S603 - docker with arguments made here; the tag and base are the user's own
            [executable, *args], capture_output=True, text=True, timeout=timeout, env=environment
        )
    except subprocess.TimeoutExpired:
        raise ImageError(f"`docker {args[0]}` did not finish within {timeout} s") from None


def docker_problem(base: str) -> str | None:
    """Why no image can be built here (no docker, no daemon, no base image, no Dockerfile), or None."""
    if shutil.which("docker") is None:
        return "docker is not installed (or not on PATH): install Docker Engine (Debian: apt-get install docker.io)"
    try:
        info = docker("info")
        if info.returncode != 0:
            last = (info.stderr.strip().splitlines() or ["docker info failed"])[-1]
            return f"no Docker daemon answers ({last}): start it (systemctl start docker, or dockerd as root)"
        if docker("image", "inspect", base).returncode != 0:
            return (
                f"the base image {base} does not exist: build it with `infra/docker/build.sh step`, or name one with "
                "--base"
            )
    except ImageError as error:  # a docker command that did not finish
        return str(error)
    if not DOCKERFILE.is_file():
        return f"{DOCKERFILE} is missing: build images from a checkout of the project"
    return None


def build_image(model_folder: Path, tag: str, base: str = DEFAULT_BASE, timeout: int = 1800) -> str:
    """Build `tag` serving the MLflow model in `model_folder` on `base`; returns the image ID. ImageError when the
    build fails, with the end of docker's output."""
    with tempfile.TemporaryDirectory(prefix="covid-xray-image-") as folder:
        context = Path(folder)
        shutil.copytree(model_folder, context / "model")
        shutil.copy(scoring_app.__file__, context / "scoring_app.py")
        arguments = ["-f", str(DOCKERFILE), "--build-arg", f"BASE_IMAGE={base}", "-t", tag, str(context)]
        built = docker("build", "-q", *arguments, timeout=timeout)
    if built.returncode != 0:
        raise ImageError(f"docker build of {tag} failed: {(built.stderr or built.stdout).strip()[-1500:]}")
    return built.stdout.strip()
