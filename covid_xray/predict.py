"""Predictions from a registered model for image files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .images import decode_grayscale, resize_square


class ModelNotFound(LookupError):
    pass


class Predictor:
    def __init__(self, model, classes: list[str], max_pixels: int = 50_000_000):
        self.model = model
        self.classes = list(classes)
        self.image_size = int(model.input_shape[1])
        self.max_pixels = max_pixels

    @classmethod
    def from_registry(cls, name: str, alias: str = "champion") -> "Predictor":
        import mlflow
        from mlflow.exceptions import MlflowException

        uri = f"models:/{name}@{alias}"
        try:
            info = mlflow.models.get_model_info(uri)
            model = mlflow.keras.load_model(uri)
        except MlflowException:
            raise ModelNotFound(f"no model registered as {name}@{alias} yet: run `covid-xray run` first, "
                                f"or check the tracking URI ({mlflow.get_tracking_uri()})") from None  # fmt: skip
        return cls(model, (info.metadata or {}).get("classes", ["covid", "normal"]))

    def predict_file(self, path: str | Path) -> tuple[str, float]:
        """(predicted class, covid probability) for one image file; ValueError with the reason otherwise."""
        path = Path(path)
        if not path.exists():
            raise ValueError("file not found")
        if not path.is_file():
            raise ValueError("not a file")
        try:
            image = decode_grayscale(path, self.max_pixels)
        except OSError as error:
            raise ValueError(f"cannot read file ({error.strerror or error})") from None
        pixels = resize_square(image, self.image_size)[None, ..., None].astype("float32")
        proba = np.asarray(self.model.predict(pixels, verbose=0))[0]
        return self.classes[int(proba.argmax())], float(proba[self.classes.index("covid")])
