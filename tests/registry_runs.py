"""Pipeline runs as the pipeline logs them, for the registry tests: a parent run with its manifest and validation
record, one evaluated variant run under it with its test predictions and a tiny logged model."""

import tempfile
from pathlib import Path

import keras
import mlflow
import numpy as np
import pandas as pd
from PIL import Image

from covid_xray.config import PreprocessConfig, PromotionConfig
from covid_xray.data.transform import InferenceTransform
from covid_xray.evaluation.decision import OperatingPoint
from covid_xray.registry.aliases import CHAMPION
from covid_xray.serving.pyfunc import log_model

CLASSES = ["covid", "normal"]
NAME = "gate-test"
N = 200  # test images, two per patient
KEYS = [f"{i:064x}" for i in range(N)]
TRUTH = np.where(np.arange(N) // 2 % 2 == 0, "covid", "normal")
GATE = PromotionConfig(
    model_name=NAME,
    min_accuracy=0.6,
    min_sensitivity=0.5,
    min_specificity=0.5,
    non_inferiority_margin=0.05,
    lease_seconds=60,
    lease_wait_seconds=120,
)


def wrong(count: int, offset: int = 0) -> np.ndarray:
    """Predictions with `count` errors spread over both classes."""
    predicted = TRUTH.copy()
    rows = (np.linspace(0, N - 1, count).astype(int) + offset) % N if count else np.zeros(0, int)
    predicted[rows] = np.where(TRUTH[rows] == "covid", "normal", "covid")
    return predicted


class Scorer:
    """Stands in for re-scoring the champion on the image files: its predictions by path, and what it was asked."""

    def __init__(self, predicted: np.ndarray):
        self.by_path = dict(zip(paths(), predicted))
        self.calls = []

    def __call__(self, model_uri: str, image_paths: list[str]) -> np.ndarray:
        self.calls.append((model_uri, list(image_paths)))
        return np.asarray([self.by_path[p] for p in image_paths])


def paths() -> list[str]:
    return [f"data/raw/s/{i:04d}.png" for i in range(N)]


def tiny_model() -> keras.Model:
    return keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")]
    )


PLAIN = InferenceTransform(8, PreprocessConfig(), min_side=8)


def example_image(folder: Path) -> str:
    path = folder / "example.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16), dtype=np.uint8), mode="L").save(path)
    return str(path)


def pipeline_run(
    predicted: np.ndarray,
    trained_on: int = 0,
    variant: str = "cnn",
    val: float | None = 0.8,
    loso: float | None = None,
    manifest: bool = True,
    validation: str | None = "passed",
) -> str:
    """A pipeline (parent) run with its manifest, and one evaluated variant run under it, as the pipeline logs them.

    The variant's training split holds the first `trained_on` of today's test images (an older split)."""
    with mlflow.start_run():
        if validation is not None:
            mlflow.set_tag("validation", validation)
        if manifest:
            split = ["train"] * trained_on + ["test"] * (N - trained_on)
            mlflow.log_text(pd.DataFrame({"sha256": KEYS, "split": split}).to_csv(index=False), "data/manifest.csv")
        if loso is not None:
            mlflow.log_metric(f"loso_mean_balanced_accuracy.{variant}", loso)
        with mlflow.start_run(nested=True) as run:
            mlflow.set_tag("model.variant", variant)
            correct = predicted == TRUTH
            covid = TRUTH == "covid"
            mlflow.log_metrics(
                {
                    "test_accuracy": correct.mean(),
                    "test_sensitivity": correct[covid].mean(),
                    "test_specificity": correct[~covid].mean(),
                }
            )
            if val is not None:
                mlflow.log_metric("val_balanced_accuracy", val)
            frame = pd.DataFrame(
                {
                    "sha256": KEYS,
                    "path": paths(),
                    "source": "s",
                    "label": TRUTH,
                    "group_id": [f"patient-{i // 2}" for i in range(N)],
                    "p_covid": (predicted == "covid").astype(float),
                    "predicted": predicted,
                }
            )
            frame["p_normal"] = 1 - frame["p_covid"]
            mlflow.log_text(frame.to_csv(index=False), "evaluation/test_predictions.csv")
            example = example_image(Path(tempfile.mkdtemp()))
            mlflow.set_tag("model_uri", log_model(tiny_model(), PLAIN, OperatingPoint(), CLASSES, example))
    return run.info.run_id


def champion(client) -> str:
    return str(client.get_model_version_by_alias(NAME, CHAMPION).version)


def alias(client, name: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(NAME, name).version)
    except mlflow.exceptions.MlflowException:
        return None
