"""The logged pyfunc and the Predictor on real X-ray files, against a real MLflow store (SQLite in a temporary
folder)."""

import io
import json
from pathlib import Path

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
from fixtures import ROBUST, ROOT, real_images
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import convert_input_example_to_serving_input, validate_serving_input

from covid_xray.config import PreprocessConfig, load_config
from covid_xray.data.cache import ImageCache
from covid_xray.data.decode import sha256_file
from covid_xray.data.transform import InferenceTransform
from covid_xray.evaluation.calibration import apply_calibration
from covid_xray.evaluation.decision import OperatingPoint, predict_labels
from covid_xray.modeling.models import build_ensemble, build_model, ensemble_members
from covid_xray.registry.lookup import find_version
from covid_xray.serving.predict import ModelNotFound, Prediction, Predictor
from covid_xray.serving.pyfunc import encode_image, log_model

CLASSES = ["covid", "normal"]
SIZE = 32


@pytest.fixture
def client(tmp_path: Path, monkeypatch) -> MlflowClient:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("serving")
    yield MlflowClient()
    mlflow.set_tracking_uri(None)


def brightness_model(slope: float, centre: float) -> keras.Model:
    """p(covid) = sigmoid(slope * (mean pixel - centre)): a model whose answer on a given image is easy to place."""
    model = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 1)),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    model.layers[-1].set_weights(
        [
            np.array([[slope / 2, -slope / 2]], np.float32),
            np.array([-slope * centre / 2, slope * centre / 2], np.float32),
        ]
    )
    return model


def log(model, transform, operating_point: OperatingPoint | None = None, example=None) -> tuple[str, str]:
    """(model URI, run id) of `model` logged the way the evaluate step logs it."""
    with mlflow.start_run() as run:
        uri = log_model(model, transform, operating_point or OperatingPoint(), CLASSES, example)
        mlflow.set_tag("model_uri", uri)
    return uri, run.info.run_id


def frame(paths) -> pd.DataFrame:
    return pd.DataFrame({"image": [encode_image(p) for p in paths]})


def test_logged_model_answers_base64_files_through_its_recorded_transform(client, shared_datasets):
    paths = real_images(shared_datasets)
    transform = InferenceTransform(SIZE, ROBUST, min_side=64)
    keras_model = brightness_model(0.05, 120)
    uri, run_id = log(keras_model, transform, OperatingPoint(0.4, "youden"), paths[0])
    assert uri.startswith("models:/m-")
    logged = mlflow.get_logged_model(uri.removeprefix("models:/"))
    assert logged.source_run_id == run_id and logged.name == "model"  # the runs table's Models column shows it
    info = mlflow.models.get_model_info(uri)
    assert info.metadata["transform"] == transform.to_record()
    assert info.metadata["operating_point"] == OperatingPoint(0.4, "youden").to_record()
    assert info.signature.inputs.input_names() == ["image"]
    assert {"class", "covid_probability", "threshold"} <= set(info.signature.outputs.input_names())
    expected = keras_model.predict(transform.batch([transform(p) for p in paths]), verbose=0)[:, 0]

    answer = mlflow.pyfunc.load_model(uri).predict(frame(paths))
    assert np.allclose(answer["covid_probability"], expected, atol=1e-5)
    assert list(answer["class"]) == list(predict_labels(answer[["p_covid", "p_normal"]].to_numpy(), CLASSES, 0.4))
    assert set(answer["threshold"]) == {0.4}

    predictor = Predictor.from_uri(uri)
    assert predictor.transform == transform and predictor.threshold == 0.4 and predictor.classes == CLASSES
    assert predictor.keras_model.input_shape == (None, SIZE, SIZE, 1)  # reachable for Grad-CAM and fine-tuning
    answers = predictor.predict_files(paths, batch_size=3)
    assert [a.path for a in answers] == [str(p) for p in paths]
    assert np.allclose([a.covid_probability for a in answers], expected, atol=1e-5)
    assert [a.label for a in answers] == list(answer["class"])


def test_model_trained_under_one_preprocessing_answers_the_same_while_another_config_is_current(
    client, tmp_path, shared_datasets
):
    """The training pixels come from the run's image cache; the loaded model rebuilds that transform from its record,
    not from the config of the day (here: the same size without preprocessing, whose pixels differ)."""
    paths = real_images(shared_datasets, per_source=3)
    trained_under = ImageCache(tmp_path / "cache", SIZE, 50_000_000, 64, ROBUST)
    pixels = trained_under.transform.batch([trained_under.get(p, sha256_file(p)).pixels for p in paths])
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 1)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(pixels, np.arange(len(paths)) % 2, epochs=2, verbose=0)
    uri, run_id = log(model, trained_under.transform, example=paths[0])
    evaluated = model.predict(pixels, verbose=0)[:, 0]

    current = ImageCache(tmp_path / "cache", SIZE, 50_000_000, 64, PreprocessConfig())  # today's config
    today = model.predict(current.transform.batch([current.get(p, sha256_file(p)).pixels for p in paths]), verbose=0)
    assert np.abs(today[:, 0] - evaluated).max() > 1e-3  # so the check below can tell the two transforms apart
    for predictor in (Predictor.from_uri(uri), Predictor.from_run(run_id)):
        assert predictor.transform == trained_under.transform
        assert np.allclose([a.covid_probability for a in predictor.predict_files(paths)], evaluated, atol=1e-5)
    served = mlflow.pyfunc.load_model(uri).predict(frame(paths))
    assert np.allclose(served["covid_probability"], evaluated, atol=1e-5)


def test_recorded_threshold_moves_a_borderline_image_in_predict_serving_and_metrics_alike(client, shared_datasets):
    path = real_images(shared_datasets)[0]
    transform = InferenceTransform(SIZE, ROBUST, min_side=64)
    mean = float(transform(path).mean())
    keras_model = brightness_model(0.1, mean + 4)  # p(covid) = sigmoid(-0.4) = 0.40 on this image
    serving_input = convert_input_example_to_serving_input(frame([path]))
    seen = {}
    for threshold in (0.5, 0.35):
        uri, _ = log(keras_model, transform, OperatingPoint(threshold, "youden"), path)
        predicted = Predictor.from_uri(uri).predict_file(path)
        served = validate_serving_input(uri, serving_input)  # what the scoring server runs on a POSTed JSON body
        metrics = predict_labels(
            np.array([[predicted.covid_probability, 1 - predicted.covid_probability]]), CLASSES, threshold
        )
        assert predicted.covid_probability == pytest.approx(0.401, abs=0.005)
        assert predicted.threshold == threshold and float(served["threshold"][0]) == threshold
        seen[threshold] = (predicted.label, str(served["class"][0]), str(metrics[0]))
    assert seen == {0.5: ("normal",) * 3, 0.35: ("covid",) * 3}


def test_bad_files_are_answered_with_their_reason_and_the_rest_still_scored(client, tmp_path, shared_datasets):
    good = real_images(shared_datasets)[:2]
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    uri, _ = log(brightness_model(0.05, 120), InferenceTransform(SIZE, ROBUST, min_side=64), example=good[0])
    predictor = Predictor.from_uri(uri)
    answers = predictor.predict_files([good[0], tmp_path / "missing.png", text, tmp_path, good[1]], batch_size=2)
    assert [type(a).__name__ for a in answers] == ["Prediction", "ValueError", "ImageError", "ValueError", "Prediction"]
    assert [str(a) for a in answers[1:4]] == [
        "file not found",
        "not a readable image (UnidentifiedImageError)",
        "not a file: a folder",
    ]
    with pytest.raises(ValueError, match="file not found"):
        predictor.predict_file(tmp_path / "missing.png")
    pyfunc = mlflow.pyfunc.load_model(uri)
    bad = pd.DataFrame(
        {"image": [encode_image(good[0]), "%%% not base64", encode_image(text), 7, encode_image(good[1])]}
    )
    served = pyfunc.predict(bad)  # one row per input, in order: a bad row is refused, the others still answered
    assert list(served["status"]) == ["ok", "refused", "refused", "refused", "ok"]
    assert list(served["reason"]) == [
        "",
        "not valid base64",
        "not a readable image (UnidentifiedImageError)",
        "expected a base64 string, got int",
        "",
    ]
    assert served["class"][1:4].isna().all() and served["covid_probability"][1:4].isna().all()
    answered = [a.covid_probability for a in predictor.predict_files(good)]
    assert np.allclose(served["covid_probability"][[0, 4]].astype(float), answered, atol=1e-5)
    with pytest.raises(MlflowException, match=r"Model is missing inputs \['image'\]"):  # the request is refused
        pyfunc.predict(pd.DataFrame({"picture": [encode_image(good[0])]}))


def test_the_scoring_server_answers_refused_rows_with_json_nulls(client, shared_datasets):
    """What `mlflow models serve` sends back for a request with a refused row: strict JSON, no NaN."""
    from mlflow.pyfunc.scoring_server import predictions_to_json

    good = real_images(shared_datasets)[0]
    uri, _ = log(brightness_model(0.05, 120), InferenceTransform(SIZE, ROBUST, min_side=64), example=good)
    served = validate_serving_input(
        uri,
        convert_input_example_to_serving_input(pd.DataFrame({"image": [encode_image(good), encode_image(b"GIF89a")]})),
    )
    buffer = io.StringIO()
    predictions_to_json(served, buffer)
    first, second = json.loads(buffer.getvalue(), parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))[
        "predictions"
    ]
    assert first["status"] == "ok" and first["class"] in CLASSES and first["out_of_distribution"] is None
    assert second == {
        "status": "refused",
        "reason": second["reason"],
        "class": None,
        "covid_probability": None,
        "threshold": None,
        "p_covid": None,
        "p_normal": None,
        "out_of_distribution": None,
        "ood_distance": None,
        "ood_threshold": None,
    }
    assert second["reason"].startswith(("not a readable image", "corrupt or truncated image"))


def test_registry_lookup_by_alias_or_version_and_a_clear_error_otherwise(client, shared_datasets):
    path = real_images(shared_datasets)[0]
    uri, _ = log(brightness_model(0.05, 120), InferenceTransform(SIZE, ROBUST, min_side=64), example=path)
    version = mlflow.register_model(uri, "serving-test").version
    client.set_registered_model_alias("serving-test", "champion", version)
    by_alias = Predictor.from_registered("serving-test", find_version(client, "serving-test").version, "champion")
    by_version = Predictor.from_registered(
        "serving-test", find_version(client, "serving-test", version=version).version
    )
    assert by_alias.description == f"serving-test v{version} (@champion)"
    assert by_version.description == f"serving-test v{version}"
    assert by_alias.predict_file(path) == by_version.predict_file(path)
    assert isinstance(by_alias.predict_file(path), Prediction)
    with pytest.raises(ModelNotFound, match="no version of serving-test holds the alias 'challenger'"):
        find_version(client, "serving-test", alias="challenger")
    with pytest.raises(ModelNotFound, match="no model registered as nothing yet"):
        find_version(client, "nothing", version="3")
    assert json.loads(json.dumps(by_alias.predict_file(path)._asdict()))["label"] in CLASSES


def untrained_members(count: int) -> list[keras.Model]:
    """Untrained cnn-small models of the default config, each from its own seed (so they answer differently)."""
    config = load_config(ROOT / "configs/default.yaml")
    variant = next(m for m in config.models if m.name == "cnn-small")
    built = []
    for seed in range(count):
        keras.utils.set_random_seed(seed)
        built.append(build_model(variant.model_copy(update={"name": f"m{seed}"}), config.data.image_size, 2))
    return built


def test_an_ensembles_pyfunc_answers_the_calibrated_mean_of_its_members(client, shared_datasets):
    config = load_config(ROOT / "configs/default.yaml")
    three = untrained_members(3)
    ensemble = build_ensemble(three, "cnn-ensemble")
    assert ensemble_members(ensemble) == three
    transform = InferenceTransform.from_data(config.data, config.validation.min_side)
    paths = real_images(shared_datasets, per_source=2)
    pixels = np.stack([transform(path) for path in paths])
    raw = [member.predict(pixels[..., None].astype("float32"), verbose=0) for member in three]
    assert np.ptp([r[:, 0] for r in raw], axis=0).max() > 1e-3  # the members disagree
    point = OperatingPoint(0.45, "youden", "temperature", (1.7,))
    with mlflow.start_run():
        uri = log_model(ensemble, transform, point, config.classes, paths[0])
    answers = Predictor.from_uri(uri).predict_files(paths)
    expected = apply_calibration("temperature", (1.7,), np.mean(raw, axis=0), config.classes)[:, 0]
    np.testing.assert_allclose([a.covid_probability for a in answers], expected, atol=1e-5)
    assert [a.label for a in answers] == ["covid" if p >= 0.45 else "non_covid" for p in expected]
