"""The logged model: an MLflow pyfunc that answers image files with the transform and threshold it was evaluated with.

Input: a DataFrame with a column `image` of base64-encoded image files (any format Pillow reads, or DICOM). Output:
one row per image, in order, with `status` ("ok", or "refused" with the `reason`: not base64, not a readable image,
too small, nearly constant, multi-frame, too large, not a radiograph: the checks ingest applies), `class`,
`covid_probability` (calibrated), `threshold`, `p_<class>`, and `out_of_distribution` with `ood_distance` and
`ood_threshold` (covid_xray.evaluation.ood; empty for a model logged without an out-of-distribution record). A refused
row has no class and no probabilities. The Keras model, the transform record, the operating point, the
out-of-distribution record and the classes are artifacts of the logged model, and the library code travels with it
(`code_paths`), so `mlflow models serve`, `mlflow.pyfunc.load_model`, `covid-xray predict` and the promotion gate all
run the same code on the same record.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import tempfile
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, NamedTuple

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel
from PIL import Image

from ..data.decode import decode_grayscale
from ..data.transform import InferenceTransform
from ..evaluation.decision import OperatingPoint
from ..evaluation.ood import OODDetector
from ..labels import POSITIVE
from ..modeling.features import feature_model

IMAGE_COLUMN = "image"
ARTIFACTS = {
    "keras_model": "model.keras",
    "transform": "transform.json",
    "operating_point": "operating_point.json",
    "classes": "classes.json",
}
OOD_ARTIFACT = ("ood", "ood.npz")  # only in models logged with an out-of-distribution record
OK, REFUSED = "ok", "refused"


class Scores(NamedTuple):
    """A batch's calibrated probabilities and classes, and (with an OOD record) feature distances and flags."""

    proba: np.ndarray
    labels: np.ndarray
    ood_distance: np.ndarray | None = None
    out_of_distribution: np.ndarray | None = None


class XrayClassifier(PythonModel):
    """Base64 image files in, class / covid probability / threshold out. Everything it needs is in its artifacts."""

    keras_model: Any = None  # a keras.Model once loaded
    transform: InferenceTransform
    operating_point: OperatingPoint
    classes: Sequence[str]
    ood: OODDetector | None = None
    _with_features = None  # the Keras model with its out-of-distribution features as a second output (built once)

    @classmethod
    def from_parts(
        cls,
        keras_model,
        transform: InferenceTransform,
        operating_point: OperatingPoint,
        classes: Sequence[str],
        ood: OODDetector | None = None,
    ) -> XrayClassifier:
        model = cls()
        model.keras_model, model.transform, model.operating_point, model.classes, model.ood = (
            keras_model,
            transform,
            operating_point,
            list(classes),
            ood,
        )
        return model

    def load_context(self, context) -> None:
        import keras

        read = lambda name: json.loads(Path(context.artifacts[name]).read_text())  # noqa: E731
        self.transform = InferenceTransform.from_record(read("transform"))
        self.operating_point = OperatingPoint.from_record(read("operating_point"))
        self.classes = list(read("classes"))
        self.keras_model = keras.saving.load_model(context.artifacts["keras_model"], compile=False)
        key = OOD_ARTIFACT[0]
        self.ood = OODDetector.load(context.artifacts[key]) if key in context.artifacts else None

    def score(self, batch: np.ndarray) -> Scores:
        """Calibrated probabilities, class names and, with an OOD record, feature distances and flags for model
        input `batch` (n, size, size, 1) float32."""
        if len(batch) == 0:
            empty = np.zeros(0) if self.ood else None
            return Scores(
                np.zeros((0, len(self.classes))),
                np.asarray(self.classes)[:0],
                empty,
                None if empty is None else empty.astype(bool),
            )
        distance = flagged = None
        if self.ood is None:
            raw = np.asarray(self.keras_model.predict_on_batch(batch))
        else:
            if self._with_features is None:
                self._with_features = feature_model(self.keras_model)
            raw, features = (np.asarray(x) for x in self._with_features.predict_on_batch(batch))
            distance, flagged = self.ood.flags(features)
        proba = self.operating_point.calibrate(raw, self.classes)
        return Scores(proba, self.operating_point.labels(proba, self.classes), distance, flagged)

    def answers(self, scores: Scores, refused: dict[int, str] | None = None) -> pd.DataFrame:
        """One row per image: the scored rows in order, with the `refused` rows (position: reason) in their places."""
        refused = refused or {}
        n = len(scores.labels) + len(refused)
        scored = np.asarray([i for i in range(n) if i not in refused], dtype=int)

        def fill(values, empty=np.nan) -> np.ndarray:  # the scored rows' values, `empty` in the refused rows
            column = np.full(n, empty, dtype=object if empty is None else np.float64)
            column[scored] = list(values) if empty is None else values
            return column

        covid = self.classes.index(POSITIVE)

        def everywhere(value) -> np.ndarray:
            return np.full(len(scored), value)

        flagged, distance = scores.out_of_distribution, scores.ood_distance
        ood_threshold = self.ood.threshold if self.ood is not None else np.nan
        ood = self.ood is not None and flagged is not None and distance is not None
        frame = pd.DataFrame(
            {
                "status": [REFUSED if i in refused else OK for i in range(n)],
                "reason": [refused.get(i, "") for i in range(n)],
                "class": fill([str(label) for label in scores.labels], None),
                "covid_probability": fill(scores.proba[:, covid]),
                "threshold": fill(everywhere(float(self.operating_point.threshold))),
                **{f"p_{c}": fill(scores.proba[:, i]) for i, c in enumerate(self.classes)},
                "out_of_distribution": fill(
                    [bool(f) for f in flagged] if flagged is not None and ood else [None] * len(scored), None
                ),
                "ood_distance": fill(distance if distance is not None and ood else everywhere(np.nan)),
                "ood_threshold": fill(everywhere(ood_threshold)),
            }
        )
        if refused:  # JSON null, not NaN, in the scoring server's answer
            frame = frame.astype(object).where(frame.notna(), None)
        return frame

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        from mlflow.exceptions import INVALID_PARAMETER_VALUE, MlflowException

        if IMAGE_COLUMN not in model_input:
            raise MlflowException(
                f"input needs a column {IMAGE_COLUMN!r} of base64-encoded image files, got {list(model_input.columns)}",
                INVALID_PARAMETER_VALUE,
            )
        arrays, refused = [], {}
        for row, value in enumerate(model_input[IMAGE_COLUMN]):
            try:
                arrays.append(self.transform(decode_base64(value)))
            except ValueError as error:  # ImageError too: the reason names what is wrong with the file
                refused[row] = str(error)
        return self.answers(self.score(self.transform.batch(arrays)), refused)


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
    """What the served model imports, pinned to what trained it (spares MLflow a slow inference subprocess). It is
    served on TensorFlow, Keras' default backend, whatever backend trained it (a .keras file loads on any): where
    TensorFlow is not installed (a model trained on a JAX-only machine), it is named without a version."""
    names = (
        "keras",
        "tensorflow",
        "numpy",
        "pandas",
        "pillow",
        "scipy",
        "scikit-image",
        "pydantic",
        "PyYAML",
        "ImageHash",
        "pydicom",
        "pylibjpeg",
        "pylibjpeg-libjpeg",
        "pylibjpeg-openjpeg",
    )
    return [pinned(name) for name in names]


def pinned(name: str) -> str:
    """`name==<installed version>`, or the bare name when it is not installed here."""
    try:
        return f"{name}=={version(name)}"
    except PackageNotFoundError:
        return name


def output_schema(classes: Sequence[str]):
    """The served columns; those a refused row (or a model without an OOD record) leaves empty are optional."""
    from mlflow.types import ColSpec, Schema

    optional = [
        ("string", "class"),
        ("double", "covid_probability"),
        ("double", "threshold"),
        *(("double", f"p_{c}") for c in classes),
        ("boolean", "out_of_distribution"),
        ("double", "ood_distance"),
        ("double", "ood_threshold"),
    ]
    return Schema(
        [
            ColSpec("string", "status"),
            ColSpec("string", "reason"),
            *(ColSpec(kind, column, required=False) for kind, column in optional),
        ]
    )


def log_model(
    keras_model,
    transform: InferenceTransform,
    operating_point: OperatingPoint,
    classes: Sequence[str],
    example_path: str | Path,
    name: str = "model",
    ood: OODDetector | None = None,
) -> str:
    """Log the pyfunc to the active run as an MLflow LoggedModel, with signature, input example and pinned
    requirements, and with `ood` (the out-of-distribution record) when given; returns its model URI (models:/m-...)."""
    from mlflow.models import ModelSignature, infer_signature

    example = pd.DataFrame({IMAGE_COLUMN: [encode_image(example_image(example_path, transform))]})
    XrayClassifier.from_parts(keras_model, transform, operating_point, classes, ood).predict(None, example)  # runs
    signature = ModelSignature(infer_signature(example).inputs, output_schema(classes))
    with tempfile.TemporaryDirectory() as folder:
        files = {key: str(Path(folder, file)) for key, file in ARTIFACTS.items()}
        keras_model.save(files["keras_model"])
        Path(files["transform"]).write_text(json.dumps(transform.to_record(), indent=1))
        Path(files["operating_point"]).write_text(json.dumps(operating_point.to_record(), indent=1))
        Path(files["classes"]).write_text(json.dumps(list(classes)))
        if ood is not None:
            files[OOD_ARTIFACT[0]] = str(Path(folder, OOD_ARTIFACT[1]))
            ood.save(files[OOD_ARTIFACT[0]])
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=XrayClassifier(),
            artifacts=files,
            code_paths=[str(Path(__file__).parents[1])],
            signature=signature,
            input_example=example,
            pip_requirements=pip_requirements(),
            metadata={
                "classes": list(classes),
                "image_size": transform.image_size,
                "transform": transform.to_record(),
                "operating_point": operating_point.to_record(),
                "ood": ood.summary() if ood else None,
            },
        )
    return info.model_uri
