"""The promotion gate against a real MLflow registry (SQLite in a temporary folder)."""

from pathlib import Path

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from PIL import Image

from covid_xray.config import PreprocessConfig, PromotionConfig
from covid_xray.decision import OperatingPoint
from covid_xray.metrics import covid_metrics
from covid_xray.promotion import CHALLENGER, CHAMPION, PREVIOUS, decide, promote_run, rollback
from covid_xray.serving import log_model
from covid_xray.transform import InferenceTransform

CLASSES = ["covid", "normal"]
NAME = "gate-test"


@pytest.fixture
def client(tmp_path: Path, monkeypatch) -> MlflowClient:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment(experiment_name="gate", )
    yield MlflowClient()
    mlflow.set_tracking_uri(None)


PLAIN = InferenceTransform(8, PreprocessConfig(), min_side=8)


@pytest.fixture(autouse=True)
def image_folder(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the test images are files in it: the gate re-reads the champion's test files


def make_test_images():
    """40 image files (bright = covid, dark = normal), their class indices and content keys."""
    rng = np.random.default_rng(0)
    bright = rng.uniform(150, 255, (20, 16, 16))
    dark = rng.uniform(0, 100, (20, 16, 16))
    paths = []
    for i, pixels in enumerate(np.concatenate([bright, dark]).astype(np.uint8)):
        paths.append(f"test-{i:02d}.png")
        Image.fromarray(pixels, mode="L").save(paths[-1])
    labels = np.array([0] * 20 + [1] * 20, np.int32)
    return paths, labels, [f"{i:04d}" for i in range(40)]


def brightness_model(threshold: float, sign: float = 1.0) -> keras.Model:
    """Predicts covid when mean brightness is above `threshold` (sign=-1 inverts it: a bad model)."""
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")])
    weights = np.zeros((64, 2), np.float32)
    weights[:, 0] = sign * 0.5 / 64
    model.layers[-1].set_weights([weights, np.array([-sign * threshold * 0.5, 0], np.float32)])
    return model


def logged_run(model: keras.Model, paths, labels, keys, transform: InferenceTransform = PLAIN) -> str:
    with mlflow.start_run():
        return logged_run_in_active(model, paths, labels, keys, transform)


def logged_run_in_active(model: keras.Model, paths, labels, keys, transform: InferenceTransform = PLAIN) -> str:
    """Log a model with its test predictions and metrics to the active run, as the evaluate step does."""
    proba = model.predict(transform.batch([transform(p) for p in paths]), verbose=0)
    truth = np.asarray(CLASSES)[labels]
    model_uri = log_model(model, transform, OperatingPoint(), CLASSES, paths[0])
    mlflow.log_metrics({f"test_{k}": v for k, v in covid_metrics(truth, proba, CLASSES).items() if np.isfinite(v)})
    frame = pd.DataFrame({"sha256": keys, "path": paths, "source": "s", "label": truth, "p_covid": proba[:, 0],
                          "p_normal": proba[:, 1]})  # fmt: skip
    mlflow.log_text(frame.to_csv(index=False), "evaluation/test_predictions.csv")
    mlflow.set_tag("model_uri", model_uri)
    return mlflow.active_run().info.run_id


GATE = PromotionConfig(model_name=NAME, min_accuracy=0.6, min_sensitivity=0.5, min_specificity=0.5)


def promote(client, model):
    paths, labels, keys = make_test_images()
    return promote_run(client, logged_run(model, paths, labels, keys), paths, labels, keys, CLASSES, GATE)


def champion(client) -> str:
    return client.get_model_version_by_alias(NAME, CHAMPION).version


def test_no_champion_yet_thresholds_alone_decide(client):
    version, decision = promote(client, brightness_model(128))
    assert decision.promote and "no champion yet" in decision.reasons
    assert champion(client) == version
    assert client.get_model_version(NAME, version).tags["promotion_decision"] == "promoted"


def test_failing_thresholds_register_but_do_not_promote(client):
    version, decision = promote(client, brightness_model(128, sign=-1))
    assert not decision.promote and decision.reasons[0].startswith("accuracy 0.000 < 0.600")
    assert client.get_model_version_by_alias(NAME, CHALLENGER).version == version
    with pytest.raises(mlflow.exceptions.MlflowException):
        client.get_model_version_by_alias(NAME, CHAMPION)


def test_worse_candidate_is_not_promoted_and_champion_stays(client):
    first, _ = promote(client, brightness_model(128))
    lenient = PromotionConfig(model_name=NAME, min_accuracy=0.0, min_sensitivity=0.0, min_specificity=0.0)
    paths, labels, keys = make_test_images()
    worse = logged_run(brightness_model(200), paths, labels, keys)  # misses the dimmer covid images
    version, decision = promote_run(client, worse, paths, labels, keys, CLASSES, lenient)
    assert not decision.promote and any("below champion" in r for r in decision.reasons)
    assert champion(client) == first != version


def test_better_candidate_is_promoted_and_old_champion_becomes_previous(client):
    first, _ = promote(client, brightness_model(190))
    second, decision = promote(client, brightness_model(128))
    assert decision.promote, decision.reasons
    assert champion(client) == second
    assert client.get_model_version_by_alias(NAME, PREVIOUS).version == first
    assert rollback(client, NAME) == (second, first)
    assert champion(client) == first


def test_crash_between_registering_and_aliasing_leaves_the_old_champion(client, monkeypatch):
    first, _ = promote(client, brightness_model(190))
    real = MlflowClient.set_registered_model_alias

    def crash_on_champion(self, name, alias, version):
        if alias == CHAMPION:
            raise RuntimeError("registry went away")
        return real(self, name, alias, version)

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", crash_on_champion)
    with pytest.raises(RuntimeError):
        promote(client, brightness_model(128))
    monkeypatch.undo()
    assert champion(client) == first
    assert len(client.search_model_versions(f"name = '{NAME}'")) == 2


def test_decide_refuses_invalid_data_and_nan_metrics():
    assert not decide({"accuracy": 1, "sensitivity": 1, "specificity": 1}, GATE, valid_data=False).promote
    assert not decide({"accuracy": float("nan"), "sensitivity": 1, "specificity": 1}, GATE).promote
    lower = PromotionConfig(model_name=NAME, min_accuracy=0.8, min_sensitivity=0, min_specificity=0, use_lower_ci=True)
    assert not decide({"accuracy": 0.85, "accuracy_ci_low": 0.7, "sensitivity": 1, "specificity": 1}, lower).promote


def test_champion_is_compared_only_on_test_images_it_did_not_train_on(client):
    paths, labels, keys = make_test_images()
    with mlflow.start_run() as parent:
        # the champion's pipeline run trained on the first 10 of today's test images
        manifest = pd.DataFrame({"sha256": keys, "split": ["train"] * 10 + ["test"] * 30})
        mlflow.log_text(manifest.to_csv(index=False), "data/manifest.csv")
        with mlflow.start_run(nested=True):
            first = logged_run_in_active(brightness_model(128), paths, labels, keys)
    promote_run(client, first, paths, labels, keys, CLASSES, GATE)
    _, decision = promote(client, brightness_model(128))
    assert decision.promote and any("on 30 test images" in r for r in decision.reasons), decision.reasons


def test_champion_is_rescored_through_its_own_transform_not_the_candidates(client):
    """Champion and candidate: the same weights, trained under different preprocessing. Through its own transform
    the champion is right on every image; fed the candidate's (histogram-equalized) pixels it would be at chance,
    exactly like the candidate, and the candidate would pass as no worse."""
    paths, labels, keys = make_test_images()
    promote_run(client, logged_run(brightness_model(128), paths, labels, keys), paths, labels, keys, CLASSES, GATE)
    equalized = InferenceTransform(8, PreprocessConfig(equalize="hist"), min_side=8)
    candidate = logged_run(brightness_model(128), paths, labels, keys, equalized)
    lenient = PromotionConfig(model_name=NAME, min_accuracy=0.0, min_sensitivity=0.0, min_specificity=0.0)
    _, decision = promote_run(client, candidate, paths, labels, keys, CLASSES, lenient)
    assert not decision.promote
    assert any("accuracy 0.500 below champion's 1.000 on 40 test images" in r for r in decision.reasons), decision.reasons
