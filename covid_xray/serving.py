"""The logged model: an MLflow pyfunc that answers image files with the transform and threshold it was evaluated with.

Input: a DataFrame with a column `image` of base64-encoded image files (any format Pillow reads). Output: one row
per image with `class`, `covid_probability` (calibrated), `threshold` and `p_<class>`. The Keras model, the
transform record, the operating point and the classes are artifacts of the logged model, and the library code
travels with it (`code_paths`), so `mlflow models serve`, `mlflow.pyfunc.load_model`, `covid-xray predict` and
the promotion gate all run the same code on the same record.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from PIL import Image

from .decision import POSITIVE, OperatingPoint
from .images import decode_grayscale
from .transform import InferenceTransform

IMAGE_COLUMN = "image"
ARTIFACTS = {"keras_model": "model.keras", "transform": "transform.json", "operating_point": "operating_point.json",
             "classes": "classes.json"}  # fmt: skip


class XrayClassifier(mlflow.pyfunc.PythonModel):
    """Base64 image files in, class / covid probability / threshold out. Everything it needs is in its artifacts."""

    keras_model = None
    transform: InferenceTransform
    operating_point: OperatingPoint
    classes: list[str]

    @classmethod
    def from_parts(cls, keras_model, transform: InferenceTransform, operating_point: OperatingPoint,
                   classes: list[str]) -> "XrayClassifier":  # fmt: skip
        model = cls()
        model.keras_model, model.transform, model.operating_point, model.classes = (
            keras_model, transform, operating_point, list(classes))  # fmt: skip
        return model

    def load_context(self, context) -> None:
        import keras

        read = lambda name: json.loads(Path(context.artifacts[name]).read_text())  # noqa: E731
        self.transform = InferenceTransform.from_record(read("transform"))
        self.operating_point = OperatingPoint.from_record(read("operating_point"))
        self.classes = list(read("classes"))
        self.keras_model = keras.saving.load_model(context.artifacts["keras_model"], compile=False)

    def score(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(calibrated probabilities, class names) for model input `batch` (n, size, size, 1) float32."""
        if len(batch) == 0:
            return np.zeros((0, len(self.classes))), np.asarray(self.classes)[:0]
        proba = self.operating_point.calibrate(np.asarray(self.keras_model.predict_on_batch(batch)), self.classes)
        return proba, self.operating_point.labels(proba, self.classes)

    def answers(self, proba: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame({"class": labels.astype(str), "covid_probability": proba[:, self.classes.index(POSITIVE)],
                             "threshold": float(self.operating_point.threshold),
                             **{f"p_{c}": proba[:, i] for i, c in enumerate(self.classes)}})  # fmt: skip

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        from mlflow.exceptions import INVALID_PARAMETER_VALUE, MlflowException

        if IMAGE_COLUMN not in model_input:
            raise MlflowException(f"input needs a column {IMAGE_COLUMN!r} of base64-encoded image files, got "
                                  f"{list(model_input.columns)}", INVALID_PARAMETER_VALUE)  # fmt: skip
        arrays = []
        for row, value in enumerate(model_input[IMAGE_COLUMN]):
            try:
                arrays.append(self.transform(decode_base64(value)))
            except ValueError as error:  # ImageError too: the reason names what is wrong with the file
                raise MlflowException(f"row {row}: {error}", INVALID_PARAMETER_VALUE) from None
        return self.answers(*self.score(self.transform.batch(arrays)))


def decode_base64(value) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"expected a base64 string, got {type(value).__name__}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64") from None


def encode_image(source: str | Path | bytes) -> str:
    """The base64 text of an image file, as the served model takes it."""
    return base64.b64encode(source if isinstance(source, bytes) else Path(source).read_bytes()).decode("ascii")


def example_image(path: str | Path, transform: InferenceTransform, side: int = 256) -> bytes:
    """A small PNG of a real image (for the logged input example): a full X-ray file would bloat the model."""
    image = decode_grayscale(path, transform.max_pixels)
    side = max(side, transform.min_side)
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def pip_requirements() -> list[str]:
    """What the served model imports, pinned to what trained it (spares MLflow a slow inference subprocess)."""
    from importlib.metadata import version

    names = ("keras", "tensorflow", "numpy", "pandas", "pillow", "scipy", "scikit-image", "pydantic", "PyYAML",
             "ImageHash")  # fmt: skip
    return [f"{name}=={version(name)}" for name in names]


def log_model(keras_model, transform: InferenceTransform, operating_point: OperatingPoint, classes: list[str],
              example_path: str | Path, name: str = "model") -> str:  # fmt: skip
    """Log the pyfunc to the active run as an MLflow LoggedModel, with signature, input example and pinned
    requirements; returns its model URI (models:/m-...)."""
    from mlflow.models import infer_signature

    example = pd.DataFrame({IMAGE_COLUMN: [encode_image(example_image(example_path, transform))]})
    output = XrayClassifier.from_parts(keras_model, transform, operating_point, classes).predict(None, example)
    with tempfile.TemporaryDirectory() as folder:
        files = {key: str(Path(folder, file)) for key, file in ARTIFACTS.items()}
        keras_model.save(files["keras_model"])
        Path(files["transform"]).write_text(json.dumps(transform.to_record(), indent=1))
        Path(files["operating_point"]).write_text(json.dumps(operating_point.to_record(), indent=1))
        Path(files["classes"]).write_text(json.dumps(list(classes)))
        info = mlflow.pyfunc.log_model(
            name=name, python_model=XrayClassifier(), artifacts=files, code_paths=[str(Path(__file__).parent)],
            signature=infer_signature(example, output), input_example=example, pip_requirements=pip_requirements(),
            metadata={"classes": list(classes), "image_size": transform.image_size, "transform": transform.to_record(),
                      "operating_point": operating_point.to_record()},
        )  # fmt: skip
    return info.model_uri
