"""Predictions for image files from a logged model, through the model's own transform and operating point."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..data.parallel import in_processes
from ..data.transform import InferenceTransform
from ..labels import POSITIVE
from .errors import ModelNotFound
from .pyfunc import XrayClassifier

# From this many files on, `predict_files` transforms them in worker processes (one per core) while the model scores
# the batches already done; below it, the processes' start-up (about a second) costs more than it saves.
PROCESSES_FROM = 64


class Prediction(NamedTuple):
    path: str
    label: str
    covid_probability: float
    threshold: float
    # Whether the image's features lie beyond the model's out-of-distribution threshold (covid_xray.ood), with the
    # distance and threshold; None for a model logged without an out-of-distribution record.
    out_of_distribution: bool | None = None
    ood_distance: float | None = None
    ood_threshold: float | None = None
    # A model of more than two classes (task three_class): each class's calibrated probability, by class name.
    class_probabilities: dict[str, float] | None = None


class Predictor:
    """A logged covid-xray model, loaded once, answering files in batches."""

    def __init__(self, model: XrayClassifier, model_uri: str, description: str | None = None):
        self.model = model
        self.model_uri = model_uri
        self.description = description or model_uri

    @property
    def classes(self) -> list[str]:
        return list(self.model.classes)

    @property
    def threshold(self) -> float:
        return float(self.model.operating_point.threshold)

    @property
    def transform(self) -> InferenceTransform:
        return self.model.transform

    @property
    def keras_model(self):
        """The Keras model itself (Grad-CAM, fine-tuning); it takes `transform.batch` of transformed pixels."""
        return self.model.keras_model

    @classmethod
    def from_registered(cls, name: str, version: str | int, alias: str | None = None) -> Predictor:
        """Registered version `version` of `name` (see `covid_xray.registry.lookup.find_version` for which one an
        alias means), described as `name vN`, or `name vN (@alias)` when it was picked by `alias`."""
        return cls.from_uri(f"models:/{name}/{version}", f"{name} v{version}" + (f" (@{alias})" if alias else ""))

    @classmethod
    def from_run(cls, run_id: str) -> Predictor:
        """The model an evaluate step logged on MLflow run `run_id`."""
        import mlflow
        from mlflow.exceptions import MlflowException

        try:
            tags = mlflow.MlflowClient().get_run(run_id).data.tags
        except MlflowException:
            raise ModelNotFound(f"no MLflow run '{run_id}' (tracking URI {mlflow.get_tracking_uri()})") from None
        if not tags.get("model_uri"):
            raise ModelNotFound(f"run {run_id} has no logged model (no model_uri tag): is it an evaluated model run?")
        return cls.from_uri(tags["model_uri"], f"{tags.get('model.variant', 'model')} of run {run_id[:8]}")

    @classmethod
    def from_uri(cls, model_uri: str, description: str | None = None) -> Predictor:
        """Any MLflow URI of a covid-xray model: models:/name/3, models:/name@alias, models:/m-..., runs:/id/model."""
        import mlflow
        from mlflow.exceptions import MlflowException

        try:
            loaded = mlflow.pyfunc.load_model(model_uri)
        except (MlflowException, OSError) as error:
            raise ModelNotFound(
                f"cannot load model {model_uri} ({str(error).splitlines()[0]}; tracking URI "
                f"{mlflow.get_tracking_uri()})"
            ) from None
        model = loaded.unwrap_python_model()
        if not isinstance(model, XrayClassifier):
            raise ModelNotFound(
                f"{model_uri} is not a covid-xray image model (logged before the inference transform "
                "was recorded with the model?): re-run the pipeline to log one"
            )
        return cls(model, model_uri, description)

    def pixels(self, path: str | Path) -> np.ndarray:
        """The model's input pixels for one file; ValueError with the reason otherwise."""
        answer = self.transform.pixels_or_reason(path)
        if isinstance(answer, ValueError):
            raise answer
        return answer

    def predict_file(self, path: str | Path) -> Prediction:
        """The prediction for one image file; ValueError with the reason for a bad file."""
        (answer,) = self.predict_files([path], batch_size=1)
        if isinstance(answer, ValueError):
            raise answer
        return answer

    def predict_files(
        self, paths, batch_size: int = 32, progress: Callable[[int], None] | None = None
    ) -> list[Prediction | ValueError]:
        """One entry per path, in order: a Prediction, or the ValueError saying why the file cannot be answered (an
        ImageError when the file was read but refused by the checks ingest applies: not an image, too small, nearly
        constant, multi-frame, too large).

        Files are transformed and scored `batch_size` at a time; `progress(n)` is called after each batch with
        the number of paths it covered."""
        paths = [str(p) for p in paths]
        answers: list[Prediction | ValueError | None] = [None] * len(paths)
        covid, several = self.classes.index(POSITIVE), len(self.classes) > 2
        workers = 1 if len(paths) < PROCESSES_FROM else None
        transformed = in_processes(self.transform.pixels_or_reason, paths, workers)
        for start in range(0, len(paths), batch_size):
            arrays, where = [], []
            for index in range(start, min(start + batch_size, len(paths))):
                pixels = next(transformed)
                if isinstance(pixels, ValueError):
                    answers[index] = pixels
                else:
                    arrays.append(pixels)
                    where.append(index)
            scores = self.model.score(self.transform.batch(arrays))
            flagged, distance, ood = scores.out_of_distribution, scores.ood_distance, self.model.ood
            for row, index in enumerate(where):
                answers[index] = Prediction(
                    paths[index],
                    str(scores.labels[row]),
                    float(scores.proba[row, covid]),
                    self.threshold,
                    None if flagged is None else bool(flagged[row]),
                    None if distance is None else float(distance[row]),
                    None if ood is None else ood.threshold,
                    dict(zip(self.classes, map(float, scores.proba[row]), strict=True)) if several else None,
                )
            if progress is not None:
                progress(min(batch_size, len(paths) - start))
        return [answer for answer in answers if answer is not None]  # every path got one
