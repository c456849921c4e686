"""Predictions from a logged or registered model for image files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

import numpy as np

from .decision import OperatingPoint
from .images import decode_grayscale, resize_square


class ModelNotFound(LookupError):
    pass


class Prediction(NamedTuple):
    path: str
    label: str
    covid_probability: float
    threshold: float


class _ResizeTransform:
    """File → model input as the logged Keras model expects it (decode to grayscale, resize to its input size)."""

    def __init__(self, size: int, max_pixels: int = 50_000_000):
        self.size = size
        self.max_pixels = max_pixels

    def __call__(self, path: str | Path) -> np.ndarray:
        path = Path(path)
        if not path.exists():
            raise ValueError("file not found")
        if not path.is_file():
            raise ValueError("not a file")
        try:
            image = decode_grayscale(path, self.max_pixels)
        except OSError as error:
            raise ValueError(f"cannot read file ({error.strerror or error})") from None
        return resize_square(image, self.size)

    def batch(self, arrays: list[np.ndarray]) -> np.ndarray:
        return np.stack(arrays)[..., None].astype("float32")


class Predictor:
    def __init__(self, model, classes: list[str], operating_point: OperatingPoint | None = None, model_uri: str = "",
                 description: str = "", max_pixels: int = 50_000_000):  # fmt: skip
        self.keras_model = model
        self.classes = list(classes)
        self.operating_point = operating_point or OperatingPoint()
        self.threshold = self.operating_point.threshold
        self.model_uri = model_uri
        self.description = description or model_uri
        self.transform = _ResizeTransform(int(model.input_shape[1]), max_pixels)

    @classmethod
    def from_registry(cls, name: str, alias: str | None = "champion", version: str | None = None) -> "Predictor":
        """The registered model `name` at `version`, else under `alias`."""
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        client = MlflowClient()
        try:
            if version:
                found = client.get_model_version(name, str(version))
            else:
                found = client.get_model_version_by_alias(name, alias)
        except MlflowException:
            which = f"version {version}" if version else f"@{alias}"
            raise ModelNotFound(f"no model registered as {name} {which}" if version else
                                f"no model registered as {name}@{alias} yet: run `covid-xray run` first, "
                                f"or check the tracking URI ({client.tracking_uri})") from None  # fmt: skip
        aliases = f" (@{', @'.join(found.aliases)})" if found.aliases else ""
        return cls.from_uri(f"models:/{name}/{found.version}", f"{name} v{found.version}{aliases}")

    @classmethod
    def from_run(cls, run_id: str) -> "Predictor":
        """The model an evaluate step logged on the MLflow run `run_id`."""
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        try:
            run = MlflowClient().get_run(run_id)
        except MlflowException:
            raise ModelNotFound(f"no MLflow run {run_id!r} in the tracking store") from None
        if "model_uri" not in run.data.tags:
            raise ModelNotFound(f"run {run_id} has no logged model (is it an evaluated model run?)")
        variant = run.data.tags.get("model.variant", "model")
        return cls.from_uri(run.data.tags["model_uri"], f"{variant} of run {run_id[:8]}")

    @classmethod
    def from_uri(cls, model_uri: str, description: str = "") -> "Predictor":
        import mlflow
        from mlflow.exceptions import MlflowException

        try:
            info = mlflow.models.get_model_info(model_uri)
            model = mlflow.keras.load_model(model_uri)
        except (MlflowException, OSError) as error:
            raise ModelNotFound(f"cannot load the model at {model_uri}: {error}") from None
        return cls(model, (info.metadata or {}).get("classes", ["covid", "normal"]), _operating_point(info.run_id),
                   model_uri, description)  # fmt: skip

    def predict_file(self, path: str | Path) -> Prediction:
        """The prediction for one image file; ValueError with the reason for a file that is not a usable image."""
        answer = self.predict_files([path])[0]
        if isinstance(answer, ValueError):
            raise answer
        return answer

    def predict_files(self, paths: Iterable[str | Path], batch_size: int = 32,
                      progress: Callable[[int], None] | None = None) -> list[Prediction | ValueError]:  # fmt: skip
        """One answer per path, in order: a Prediction, or the ValueError saying why the file cannot be answered.
        The model sees `batch_size` images per call; `progress(n)` is told each time n more paths are done."""
        paths = [str(p) for p in paths]
        answers: list[Prediction | ValueError | None] = [None] * len(paths)
        covid = self.classes.index("covid")
        for start in range(0, len(paths), batch_size):
            chunk, pixels, where = paths[start:start + batch_size], [], []
            for offset, path in enumerate(chunk):
                try:
                    pixels.append(self.transform(path))
                    where.append(start + offset)
                except ValueError as error:
                    answers[start + offset] = error
            if pixels:
                raw = np.asarray(self.keras_model.predict(self.transform.batch(pixels), verbose=0))
                proba = self.operating_point.calibrate(raw, self.classes)
                labels = self.operating_point.labels(proba, self.classes)
                for index, label, p in zip(where, labels, proba[:, covid]):
                    answers[index] = Prediction(paths[index], str(label), float(p), self.threshold)
            if progress is not None:
                progress(len(chunk))
        return answers  # type: ignore[return-value]


def _operating_point(run_id: str | None) -> OperatingPoint:
    """The operating point the evaluate step recorded on the model's run; 0.5 for a model logged before that."""
    import mlflow

    name = "evaluation/operating_point.json"
    if not run_id or name not in {a.path for a in mlflow.MlflowClient().list_artifacts(run_id, "evaluation")}:
        return OperatingPoint()
    return OperatingPoint.from_record(json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/{name}")))
