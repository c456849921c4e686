"""ZenML settings from the run config's `execution` section: resources and orchestrator settings for the train
steps, Docker settings for the pipeline. Empty sections give no settings, so the local stack runs unchanged."""

from __future__ import annotations

import copy
from typing import Any

from zenml.config import DockerSettings, ResourceSettings

from covid_xray.config import RunConfig
from covid_xray.ops.stack import PROJECT_ROOT


def train_step_settings(config: RunConfig) -> dict[str, Any]:
    train = config.execution.train
    settings: dict[str, Any] = {}
    resources = train.resources.model_dump(exclude_none=True)
    if resources:
        settings["resources"] = ResourceSettings(**resources)
    if train.orchestrator:
        # ZenML validates it against the active orchestrator's flavor (and may consume it: pass a copy)
        settings["orchestrator"] = copy.deepcopy(train.orchestrator)
    return settings


def pipeline_settings(config: RunConfig) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    docker = dict(config.execution.docker)
    # Paths in the config are relative to the project root, like `infra/Dockerfile`.
    for key in ("dockerfile", "build_context_root"):
        if key in docker and not str(docker[key]).startswith("/"):
            docker[key] = str(PROJECT_ROOT / docker[key])
    if docker:
        settings["docker"] = DockerSettings(**docker)
    orchestrator = copy.deepcopy(config.execution.orchestrator)
    volumes = orchestrator.get("run_args", {}).get("volumes")
    if volumes:  # docker-py's {host path: {bind, mode}}; a relative host path is one in the project
        orchestrator["run_args"]["volumes"] = {str(PROJECT_ROOT / host): mount for host, mount in volumes.items()}
    if orchestrator:
        settings["orchestrator"] = orchestrator
    return settings
