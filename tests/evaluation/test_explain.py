import keras
import numpy as np
import pytest
from fixtures import ROOT, real_images

from covid_xray.config import ModelConfig, load_config
from covid_xray.data.transform import InferenceTransform
from covid_xray.evaluation.explain import (
    border_area_share,
    border_check,
    border_share,
    grad_cam,
    sample_per_class,
    shortcut_check,
)
from covid_xray.evaluation.metrics import source_predictability
from covid_xray.modeling.features import predict_with_features
from covid_xray.modeling.models import build_cnn, build_ensemble, build_model, build_vgg16


@pytest.mark.parametrize("kind", ["cnn", "vgg16"])
def test_grad_cam_gives_one_normalised_heatmap_per_image(kind):
    config = ModelConfig(name="m", kind=kind, weights="none", conv_filters=[4, 8], head={"dense_units": [4]})
    model = (build_cnn if kind == "cnn" else build_vgg16)(config, 32, 2)
    images = np.random.default_rng(0).uniform(0, 255, (3, 32, 32)).astype(np.uint8)
    heat = grad_cam(model, images, class_index=0)
    assert heat.shape == (3, 32, 32) and heat.min() >= 0 and heat.max() <= 1
    assert np.allclose(grad_cam(model, images, class_index=0, batch_size=2), heat, atol=1e-6)  # in chunks, the same
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


def test_the_border_share_is_the_heatmap_mass_in_the_outer_band_and_warns_above_its_area():
    size, width = 128, 15  # the default config's input: a 15 px band, 41.4% of the area
    even = np.ones((1, size, size))
    edges = np.zeros((1, size, size))
    edges[:, :width, :] = 1.0  # the top band only: burnt-in text along the film's edge
    centre = np.zeros((1, size, size))
    centre[:, 40:90, 30:100] = 1.0  # the lung fields
    empty = np.zeros((1, size, size))
    assert border_area_share(size) == pytest.approx(1 - (size - 2 * width) ** 2 / size**2)
    assert border_area_share(size) == pytest.approx(0.4138, abs=1e-4)
    shares = border_share(np.concatenate([even, edges, centre, empty]))
    assert shares[:3] == pytest.approx([border_area_share(size), 1.0, 0.0]) and np.isnan(shares[3])
    result, warning = border_check(np.concatenate([edges, centre, empty]))
    assert result["border_share"] == pytest.approx(0.5) and result["images"] == 2  # the empty map is not counted
    assert warning.startswith("edge attention: 50% of the Grad-CAM mass lies in the outer 12% band")
    assert border_check(np.concatenate([even, centre]))[1] is None


def test_the_figures_sample_is_part_of_the_measured_sample():
    labels = np.array([0] * 70 + [1] * 30 + [2] * 5)
    measured, shown = sample_per_class(labels, per_class=50), sample_per_class(labels, per_class=4)
    assert set(shown) <= set(measured) and len(shown) == 4 + 4 + 4 and len(measured) == 50 + 30 + 5


def test_a_cnn_that_reads_a_corner_marker_has_its_grad_cam_on_the_border():
    """A CNN trained where a bright corner marker gives the label away (a source's marker, as in the public data)
    looks at the corner: the border check warns; the same CNN on images whose label is a central blob does not."""
    rng = np.random.default_rng(3)
    config = ModelConfig(name="m", kind="cnn", conv_filters=[8, 16], head={"dense_units": [16]})

    def fitted(images, labels):
        keras.utils.set_random_seed(3)
        model = build_cnn(config, 64, 2)
        model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
        model.fit(images[..., None].astype("float32"), labels, epochs=15, batch_size=16, verbose=0)
        return model

    labels = np.arange(96) % 2
    noise = rng.uniform(60, 120, (96, 64, 64))
    marked = noise.copy()
    marked[labels == 0, 2:8, 2:8] = 255.0  # the marker: class 0 (covid) only
    heat = grad_cam(fitted(marked, labels), marked[labels == 0][:16].astype(np.uint8), class_index=0)
    assert border_check(heat)[1] is not None, border_share(heat)
    blob = noise.copy()
    blob[labels == 0, 22:42, 22:42] += 80.0
    heat = grad_cam(fitted(blob, labels), blob[labels == 0][:16].astype(np.uint8), class_index=0)
    assert border_check(heat)[1] is None, border_share(heat)


def test_an_ensembles_grad_cam_is_the_mean_of_its_members_maps(shared_datasets):
    config = load_config(ROOT / "configs/default.yaml")
    variant = next(m for m in config.models if m.name == "cnn-small")
    members = []
    for seed in range(2):
        keras.utils.set_random_seed(seed)
        members.append(build_model(variant.model_copy(update={"name": f"m{seed}"}), config.data.image_size, 2))
    transform = InferenceTransform.from_data(config.data, config.validation.min_side)
    pixels = np.stack([transform(path) for path in real_images(shared_datasets, per_source=1)])
    maps = [grad_cam(member, pixels, 0) for member in members]
    mean = np.mean(maps, axis=0)
    expected = mean / mean.reshape(len(mean), -1).max(axis=1)[:, None, None]
    np.testing.assert_allclose(grad_cam(build_ensemble(members, "e"), pixels, 0), expected, atol=1e-6)
