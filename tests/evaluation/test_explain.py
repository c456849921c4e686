import numpy as np
import pytest

from covid_xray.config import ModelConfig
from covid_xray.evaluation.explain import grad_cam, sample_per_class, shortcut_check
from covid_xray.evaluation.metrics import source_predictability
from covid_xray.modeling.features import predict_with_features
from covid_xray.modeling.models import build_cnn, build_vgg16


@pytest.mark.parametrize("kind", ["cnn", "vgg16"])
def test_grad_cam_gives_one_normalised_heatmap_per_image(kind):
    config = ModelConfig(name="m", kind=kind, weights="none", conv_filters=[4, 8], head={"dense_units": [4]})
    model = (build_cnn if kind == "cnn" else build_vgg16)(config, 32, 2)
    images = np.random.default_rng(0).uniform(0, 255, (3, 32, 32)).astype(np.uint8)
    heat = grad_cam(model, images, class_index=0)
    assert heat.shape == (3, 32, 32) and heat.min() >= 0 and heat.max() <= 1
    proba, features = predict_with_features(model, images)
    assert proba.shape == (3, 2) and len(features) == 3


def test_sample_per_class_is_fixed_and_capped():
    labels = np.array([0] * 10 + [1] * 2)
    first = sample_per_class(labels, per_class=4)
    assert np.array_equal(first, sample_per_class(labels, per_class=4))
    assert (labels[first] == 0).sum() == 4 and (labels[first] == 1).sum() == 2


def test_source_predictability_sees_a_source_signature_and_warns_only_with_confounding():
    rng = np.random.default_rng(0)
    sources = np.array(["a"] * 40 + ["b"] * 40)
    groups = np.arange(80)
    marked = rng.normal(0, 1, (80, 8)) + (sources == "a")[:, None] * 3  # source a leaves a trace in the features
    result, warning = shortcut_check(marked, sources, groups, confounding=0.8)
    assert result["source_accuracy"] > 0.9 and result["source_majority_rate"] == 0.5
    assert warning and warning.startswith("shortcut risk")
    assert shortcut_check(marked, sources, groups, confounding=0.1)[1] is None
    blind = source_predictability(rng.normal(0, 1, (80, 8)), sources, groups)
    assert blind["source_accuracy"] < 0.75
