from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest
from fixtures import ROOT, real_images

from covid_xray.config import load_config
from covid_xray.data.transform import InferenceTransform
from covid_xray.evaluation.calibration import apply_calibration
from covid_xray.evaluation.decision import OperatingPoint
from covid_xray.evaluation.explain import grad_cam
from covid_xray.modeling.models import build_ensemble, build_model, ensemble_members
from covid_xray.serving.predict import Predictor
from covid_xray.serving.pyfunc import log_model

CONFIG = load_config(ROOT / "configs/default.yaml")


@pytest.fixture
def store(tmp_path: Path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("pyfunc")
    yield
    mlflow.set_tracking_uri(None)


def members(count: int) -> list[keras.Model]:
    """Untrained cnn-small models of the default config, each from its own seed (so they answer differently)."""
    variant = next(m for m in CONFIG.models if m.kind == "cnn")
    built = []
    for seed in range(count):
        keras.utils.set_random_seed(seed)
        built.append(build_model(variant.model_copy(update={"name": f"m{seed}"}), CONFIG.data.image_size, 2))
    return built


def test_an_ensembles_pyfunc_answers_the_calibrated_mean_of_its_members(store, shared_datasets, tmp_path):
    three = members(3)
    ensemble = build_ensemble(three, "cnn-ensemble")
    assert ensemble_members(ensemble) == three
    transform = InferenceTransform.from_data(CONFIG.data, CONFIG.validation.min_side)
    paths = real_images(shared_datasets, per_source=2)
    pixels = np.stack([transform(path) for path in paths])
    raw = [member.predict(pixels[..., None].astype("float32"), verbose=0) for member in three]
    assert np.ptp([r[:, 0] for r in raw], axis=0).max() > 1e-3  # the members disagree
    point = OperatingPoint(0.45, "youden", "temperature", (1.7,))
    with mlflow.start_run():
        uri = log_model(ensemble, transform, point, CONFIG.classes, paths[0])
    answers = Predictor.from_uri(uri).predict_files(paths)
    expected = apply_calibration("temperature", (1.7,), np.mean(raw, axis=0), CONFIG.classes)[:, 0]
    np.testing.assert_allclose([a.covid_probability for a in answers], expected, atol=1e-5)
    assert [a.label for a in answers] == ["covid" if p >= 0.45 else "non_covid" for p in expected]


def test_an_ensembles_grad_cam_is_the_mean_of_its_members_maps(shared_datasets):
    two = members(2)
    transform = InferenceTransform.from_data(CONFIG.data, CONFIG.validation.min_side)
    pixels = np.stack([transform(path) for path in real_images(shared_datasets, per_source=1)])
    maps = [grad_cam(member, pixels, 0) for member in two]
    mean = np.mean(maps, axis=0)
    expected = mean / mean.reshape(len(mean), -1).max(axis=1)[:, None, None]
    np.testing.assert_allclose(grad_cam(build_ensemble(two, "e"), pixels, 0), expected, atol=1e-6)
