"""Any Keras backend: the same batches for a seed, gradients through the adapter and the gradient reversal, and a
source-adversarial seed ensemble trained under JAX (or PyTorch, where installed) that the TensorFlow pyfunc serves with
the same answers on real X-rays."""

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from fixtures import ROBUST, real_images

from covid_xray.data.transform import InferenceTransform
from covid_xray.evaluation.decision import OperatingPoint
from covid_xray.modeling import backend
from covid_xray.modeling.sampling import balanced_batches, shuffled_batches
from covid_xray.serving.pyfunc import encode_image, log_model

ROOT = Path(__file__).resolve().parents[2]
TESTS = Path(__file__).resolve().parents[1]

TRAIN_ELSEWHERE = r"""
import json, sys
from pathlib import Path
import keras, numpy as np
from covid_xray.config import ModelConfig
from covid_xray.modeling import backend
from covid_xray.modeling.adversarial import GradientReversal
from covid_xray.modeling.sampling import balanced_batches, shuffled_batches
from covid_xray.modeling.training import train_model
from fixtures import tiny_split

out = Path(sys.argv[1])
cells = np.array([0, 0, 1, 1, 1, 2, 2, 0, 1, 2, 2])
plans = {"shuffle": [b.tolist() for b in shuffled_batches(11, 4, seed=7, epoch=3)],
         "source_label": [b.tolist() for b in balanced_batches(cells, 4, seed=7, epoch=3)]}
x = np.linspace(-2, 2, 5, dtype="float32")
value, gradient = backend.value_and_gradient(lambda t: t * t, x)
assert np.allclose(value, x * x) and np.allclose(gradient, 2 * x), (value, gradient)
reversal = GradientReversal(weight=0.5, warmup_steps=0, ramp_steps=1)
reversal.steps.assign(5.0)
value, gradient = backend.value_and_gradient(lambda t: reversal(t) * x, x)
assert np.array_equal(value, x * x) and np.allclose(gradient, -0.5 * 0.99990920 * x, rtol=1e-5), (value, gradient)
train, val = tiny_split(12, 0, out / "data", 64), tiny_split(6, 40, out / "data", 64)
train.sources, val.sources = np.array(["a", "b"] * 6), np.array(["a", "b"] * 3)
# the source-adversarial seed ensemble: the reversal, the source head and the members' mean under this backend
config = ModelConfig(name="cnn-small", kind="cnn", conv_filters=[4, 8], head={"dense_units": [8]}, epochs=2,
                     batch_size=4, augment="acquisition", sampling="source_label", members=2,
                     adversarial={"weight": 0.5, "warmup_epochs": 0, "ramp_epochs": 1, "units": 4})
model = train_model(config, train, val, n_classes=2, image_size=64, image_cache_key="k", cache_dir=str(out / "c"),
                    verbose=0).model
model.save(out / "model.keras")
pixels = np.load(out / "pixels.npy")
np.save(out / "proba.npy", keras.ops.convert_to_numpy(model.predict(pixels[..., None].astype("float32"), verbose=0)))
(out / "answer.json").write_text(json.dumps({"backend": backend.name(), "plans": plans}))
"""


def requires(framework: str) -> None:
    """JAX is in the project's `jax` extra, which CI installs: there it must be present. PyTorch is tested where it
    is installed (its Linux wheel pulls gigabytes of CUDA libraries)."""
    if framework == "jax" and os.environ.get("CI"):
        __import__("jax")
    else:
        pytest.importorskip(framework)


@pytest.mark.parametrize("framework", ["jax", "torch"])
def test_a_model_trained_under_another_backend_answers_the_same_in_the_tensorflow_pyfunc(
    framework, tmp_path, shared_datasets
):
    requires(framework)
    transform = InferenceTransform(64, ROBUST, min_side=64)
    files = real_images(shared_datasets, per_source=2)
    np.save(tmp_path / "pixels.npy", np.stack([transform(path) for path in files]))
    env = os.environ | {"KERAS_BACKEND": framework, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)])}
    done = subprocess.run(
        [sys.executable, "-c", TRAIN_ELSEWHERE, str(tmp_path)], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads((tmp_path / "answer.json").read_text())
    assert answer["backend"] == framework and backend.name() == "tensorflow"
    cells = np.array([0, 0, 1, 1, 1, 2, 2, 0, 1, 2, 2])
    assert answer["plans"]["shuffle"] == [b.tolist() for b in shuffled_batches(11, 4, seed=7, epoch=3)]
    assert answer["plans"]["source_label"] == [b.tolist() for b in balanced_batches(cells, 4, seed=7, epoch=3)]

    import keras

    trained_elsewhere = keras.saving.load_model(tmp_path / "model.keras", compile=False)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        mlflow.set_experiment("backends")  # not an experiment id cached by an earlier test in this process
        with mlflow.start_run():
            uri = log_model(trained_elsewhere, transform, OperatingPoint(), ["covid", "normal"], files[0])
        served = mlflow.pyfunc.load_model(uri).predict(
            __import__("pandas").DataFrame({"image": [encode_image(path) for path in files]})
        )
    finally:
        mlflow.set_tracking_uri(None)
    expected = np.load(tmp_path / "proba.npy")
    assert list(served["status"]) == ["ok"] * len(files)
    difference = np.abs(served[["p_covid", "p_normal"]].to_numpy(float) - expected)
    assert difference.max() <= 1e-4, difference.max()
    assert expected[:, 0].std() > 0  # the model answers differently for different X-rays


def test_gradients_and_devices_under_the_default_backend():
    x = np.linspace(-2, 2, 5, dtype="float32")
    value, gradient = backend.value_and_gradient(lambda t: t * t * t, x)
    assert np.allclose(value, x**3) and np.allclose(gradient, 3 * x**2)
    assert backend.accelerators() == [] and backend.replicas() == 1  # this CPU-only machine
    with backend.distribution():
        pass
