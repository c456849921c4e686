"""What every MLflow run records besides metrics: config as params, data version, code version, hardware."""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.data.pandas_dataset import from_pandas

from ..config import RunConfig
from ..modeling import backend


def flat_params(config: RunConfig, model_name: str | None = None) -> dict[str, str]:
    """The config as dotted keys; with `model_name`, only that model's entry under `model.`."""
    raw = config.model_dump(mode="json")
    models = raw.pop("models")
    if model_name is not None:
        raw["model"] = next(m for m in models if m["name"] == model_name)
    else:
        raw["models"] = [m["name"] for m in models]
    params: dict[str, str] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
        else:
            params[prefix] = str(value)[:6000]

    walk("", raw)
    return params


def git_commit() -> str:
    try:
        out = subprocess.run(  # noqa: S603 - fixed arguments
            ["git", "rev-parse", "HEAD"],  # noqa: S607 - the git on the PATH, as a user runs it
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).resolve().parents[2],
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def hardware() -> dict[str, str]:
    """The CPU, the GPUs the Keras backend sees, and the backend itself, as MLflow params."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpus = backend.accelerators()
    return {
        "hardware.cpu": cpu,
        "hardware.gpus": ", ".join(gpus) or "none",
        "hardware.gpu_count": str(len(gpus)),
        "hardware.keras_backend": backend.name(),
    }


def log_training_dataset(
    split, classes: Sequence[str], manifest_hash: str, data_version: str, context: str = "training"
) -> None:
    """The images a model trained on, as an MLflow input dataset of the active run: the runs table's Dataset column
    then names the data version, and the run records which images (content keys), labels and sources it saw."""
    frame = pd.DataFrame({"sha256": list(split.keys), "label": np.asarray(classes)[np.asarray(split.labels, int)]})
    if split.sources is not None:
        frame["source"] = np.asarray(split.sources)
    dataset = from_pandas(frame, name=f"covid-xray-data-{manifest_hash[:8]}", digest=manifest_hash, targets="label")
    mlflow.log_input(dataset, context=context, tags={"data.dvc_md5": data_version})
