"""A logged model's network for other runtimes (`covid-xray export`): ONNX or a TensorFlow SavedModel, written by Keras
3's own export (`Model.export`; tf2onnx for ONNX), with the records that say how to feed it and how to read it.

The folder written:

- `model.onnx` or `saved_model/`: the network. Input `image`, float32 (n, size, size, 1): the grayscale pixels
  0..255 the inference transform makes (the network rescales them itself). Output: the uncalibrated class
  probabilities (n, classes), in the order of classes.json.
- `transform.json`, `operating_point.json`, `classes.json`: the records the served model reads (decode and
  preprocessing; calibration and threshold; classes), copied unchanged.
- `export.json`: what the folder holds, which registered version it came from, and the versions that wrote it.

`ExportedModel` runs an exported ONNX folder in onnxruntime through the same transform, calibration and threshold: the
parity test (tests/serving/test_export.py) checks it against the logged pyfunc, and it is the worked example for any
other runtime. The out-of-distribution check is not exported: its features and record exist only in the pyfunc.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import onnxruntime

from ..data.transform import InferenceTransform
from ..evaluation.decision import OperatingPoint
from ..labels import POSITIVE
from .inputs import check_new_folder
from .pyfunc import XrayClassifier, pinned

# --format: (what the network is written as, Keras' export format)
FORMATS = {"onnx": ("model.onnx", "onnx"), "saved_model": ("saved_model", "tf_saved_model")}
MANIFEST = "export.json"


class ExportError(ValueError):
    """An export that cannot be written or run; the message names the folder or format."""


def export_model(model: XrayClassifier, folder: Path, fmt: str, origin: dict) -> Path:
    """Write `model`'s network in format `fmt` (a key of FORMATS) and its records into `folder`, described by `origin`
    (the registered name, version and model URI); returns the manifest's path. `folder` is new or empty (an empty
    folder may be a mount point, a link or the current folder); a failed export leaves it as it was: emptied again,
    or removed when the export made it."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    check_new_folder(folder, "--output")  # InputError
    network, keras_format = FORMATS[fmt]
    keras_model = model.keras_model
    size = model.transform.image_size
    keras_model(np.zeros((1, size, size, 1), np.float32))  # Keras exports only a model that has been called
    made = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():  # tf2onnx's own FutureWarning on np.object
            warnings.simplefilter("ignore", FutureWarning)
            keras_model.export(str(folder / network), format=keras_format, verbose=False)
        records = {
            "transform.json": model.transform.to_record(),
            "operating_point.json": model.operating_point.to_record(),
            "classes.json": list(model.classes),
            MANIFEST: {
                "format": fmt,
                "network": network,
                "input": {"name": keras_model.inputs[0].name, "dtype": "float32", "shape": [None, size, size, 1]},
                "input_values": "grayscale pixels 0..255 made by the inference transform (transform.json)",
                "output": {"dtype": "float32", "shape": [None, len(model.classes)]},
                "output_values": "uncalibrated class probabilities in the order of classes.json: apply "
                "operating_point.json's calibration, then its threshold to p(covid)",
                "out_of_distribution_check": "not exported (only the MLflow model has it)",
                "origin": origin,
                "written_by": [pinned(name) for name in ("covid-xray", "keras", "tensorflow", "tf2onnx")],
            },
        }
        for name, record in records.items():  # the manifest last: a folder with export.json is a whole export
            (folder / name).write_text(json.dumps(record, indent=1) + "\n")
    except BaseException:
        if made:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            for written in folder.iterdir():
                if written.is_dir():
                    shutil.rmtree(written)
                else:
                    written.unlink()
        raise
    return folder / MANIFEST


class ExportedModel:
    """An exported ONNX folder run by onnxruntime: the transform from transform.json, the network, then the
    calibration and threshold from operating_point.json."""

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        manifest = json.loads((folder / MANIFEST).read_text())
        if manifest["format"] != "onnx":
            raise ExportError(f"{folder}: a {manifest['format']} export; ExportedModel runs ONNX exports")
        read = lambda name: json.loads((folder / name).read_text())  # noqa: E731
        self.transform = InferenceTransform.from_record(read("transform.json"))
        self.operating_point = OperatingPoint.from_record(read("operating_point.json"))
        self.classes: list[str] = list(read("classes.json"))
        self.session = onnxruntime.InferenceSession(str(folder / manifest["network"]))
        self.input_name = self.session.get_inputs()[0].name

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities for model input `batch` (n, size, size, 1) float32 (`transform.batch`)."""
        (raw,) = self.session.run(None, {self.input_name: batch.astype(np.float32)})
        return self.operating_point.calibrate(raw, self.classes)

    def covid_probability(self, paths) -> np.ndarray:
        """p(covid), calibrated, for image files (ValueError naming what is wrong with a bad one)."""
        proba = self.probabilities(self.transform.batch([self.transform(p) for p in paths]))
        return proba[:, self.classes.index(POSITIVE)]

    def labels(self, proba: np.ndarray) -> np.ndarray:
        return self.operating_point.labels(proba, self.classes)
