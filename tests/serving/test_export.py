"""`covid-xray export`'s library: the network written by Keras 3 as ONNX answers in onnxruntime as the logged pyfunc
answers (the default config's architectures and preprocessing, real images, a temperature calibration); the
SavedModel answers as the Keras model; a used folder is refused before any work."""

import json
from pathlib import Path

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from fixtures import real_images

from covid_xray.config import load_config
from covid_xray.data.transform import InferenceTransform
from covid_xray.evaluation.decision import OperatingPoint
from covid_xray.modeling.models import build_model
from covid_xray.serving.export import ExportedModel, ExportError, export_model
from covid_xray.serving.inputs import InputError
from covid_xray.serving.pyfunc import XrayClassifier, encode_image, log_model

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["covid", "normal"]
TOLERANCE = 1e-4  # max |Δp(covid)| between onnxruntime and the pyfunc, as the issue asks
# Temperature 1.6, threshold 0.42: the export must carry the calibration and the operating point, not only the network.
OPERATING_POINT = OperatingPoint(0.42, "youden", "temperature", (1.6,))


def default_transform() -> InferenceTransform:
    config = load_config(ROOT / "configs/default.yaml")
    return InferenceTransform.from_data(config.data, config.validation.min_side)


def default_network(variant: str, transform: InferenceTransform, images: list[Path]) -> keras.Model:
    """The default config's `variant`, fitted for a few epochs on `images` labelled by their place in the list (the
    first sources against the others: learnable, as a source is): a network whose answers spread over (0, 1), so that
    agreement between runtimes is not agreement at 0.5."""
    config = load_config(ROOT / "configs/default.yaml")
    (model_config,) = [m for m in config.models if m.name == variant]
    keras.utils.set_random_seed(7)
    network = build_model(model_config, transform.image_size, len(CLASSES))
    network.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    x = transform.batch([transform(path) for path in images])
    network.fit(x, np.arange(len(images)) >= len(images) // 2, epochs=8, batch_size=8, verbose=0)
    return network


@pytest.fixture
def logged(tmp_path, shared_datasets, request):
    """(the pyfunc loaded back from MLflow, the real images) for the default config's variant `request.param`."""
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("export")
    transform = default_transform()
    images = real_images(shared_datasets, per_source=4)
    network = default_network(request.param, transform, images)
    try:
        with mlflow.start_run():
            uri = log_model(network, transform, OPERATING_POINT, CLASSES, images[0], name=request.param)
        yield mlflow.pyfunc.load_model(uri), images
    finally:
        mlflow.set_tracking_uri(None)


def served(loaded, images) -> pd.DataFrame:
    return loaded.predict(pd.DataFrame({"image": [encode_image(path) for path in images]}))


@pytest.mark.parametrize(
    "logged", ["cnn-small", pytest.param("vgg16-frozen", marks=pytest.mark.slow)], indirect=True, ids=str
)
def test_the_onnx_export_answers_real_images_as_the_served_model_does(logged, tmp_path):
    loaded, images = logged
    model = loaded.unwrap_python_model()
    assert isinstance(model, XrayClassifier)
    folder = tmp_path / "exported"
    manifest = json.loads(export_model(model, folder, "onnx", {"model_uri": "models:/m-test"}).read_text())
    assert sorted(p.name for p in folder.iterdir()) == [
        "classes.json",
        "export.json",
        "model.onnx",
        "operating_point.json",
        "transform.json",
    ]
    assert manifest["input"] == {"name": "image", "dtype": "float32", "shape": [None, 128, 128, 1]}
    assert manifest["origin"] == {"model_uri": "models:/m-test"}

    exported = ExportedModel(folder)
    assert exported.transform == model.transform and exported.operating_point == OPERATING_POINT
    answers = served(loaded, images)
    assert (answers["status"] == "ok").all(), answers["reason"].tolist()
    onnx_p = exported.covid_probability(images)
    difference = np.abs(onnx_p - answers["covid_probability"].to_numpy())
    print(f"{model.keras_model.name}: max |Δp| {difference.max():.1e} over {len(images)} images, sd {onnx_p.std():.3f}")
    assert difference.max() <= TOLERANCE, difference.max()
    assert onnx_p.std() > 0.02, onnx_p  # the answers differ from image to image: the comparison means something
    covid = CLASSES.index("covid")
    proba = exported.probabilities(exported.transform.batch([exported.transform(p) for p in images]))
    assert list(exported.labels(proba)) == answers["class"].tolist()
    assert np.allclose(proba[:, covid], onnx_p)


@pytest.mark.parametrize("logged", ["cnn-small"], indirect=True)
def test_the_saved_model_export_answers_as_the_keras_network(logged, tmp_path):
    loaded, images = logged
    model = loaded.unwrap_python_model()
    export_model(model, tmp_path / "exported", "saved_model", {})
    restored = tf.saved_model.load(str(tmp_path / "exported" / "saved_model"))
    batch = model.transform.batch([model.transform(path) for path in images])
    assert np.abs(restored.serve(batch).numpy() - model.keras_model.predict(batch, verbose=0)).max() <= 1e-6
    assert json.loads((tmp_path / "exported" / "transform.json").read_text()) == model.transform.to_record()
    with pytest.raises(ExportError, match="a saved_model export; ExportedModel runs ONNX exports"):
        ExportedModel(tmp_path / "exported")


def test_a_folder_in_use_or_an_unknown_format_is_refused_before_any_work(tmp_path):
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    unused_model = XrayClassifier.from_parts(None, InferenceTransform(32), OperatingPoint(), CLASSES)
    with pytest.raises(InputError, match=r"--output .*used: the folder is not empty"):
        export_model(unused_model, used, "onnx", {})
    assert [p.name for p in used.iterdir()] == ["notes.txt"]
    with pytest.raises(ExportError, match="unknown export format 'tflite': choose one of onnx, saved_model"):
        export_model(unused_model, tmp_path / "new", "tflite", {})
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("logged", ["cnn-small"], indirect=True)
def test_an_empty_folder_reached_by_a_link_takes_the_export_and_a_failed_export_leaves_it_empty(logged, tmp_path):
    """An empty folder (a mount point, a link, `.`) is written in place; an export that fails half-way is undone."""
    model = logged[0].unwrap_python_model()
    (tmp_path / "volume").mkdir()
    (tmp_path / "out").symlink_to(tmp_path / "volume")
    export_model(model, tmp_path / "out", "onnx", {})
    assert (tmp_path / "volume" / "model.onnx").is_file() and (tmp_path / "volume" / "export.json").is_file()

    (tmp_path / "empty").mkdir()
    broken = XrayClassifier.from_parts(model.keras_model, model.transform, model.operating_point, CLASSES)
    with pytest.raises(TypeError):  # a manifest that cannot be written: after the network and two records
        export_model(broken, tmp_path / "empty", "onnx", {"not json": object()})
    assert list((tmp_path / "empty").iterdir()) == []
    with pytest.raises(TypeError):
        export_model(broken, tmp_path / "new" / "deeper", "onnx", {"not json": object()})
    assert not (tmp_path / "new" / "deeper").exists()
