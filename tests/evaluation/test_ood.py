"""Out-of-distribution flags: the detector's statistics, and the input gate of `predict` and serving on a model trained
on the real shared data through the default config's preprocessing (configs/default.yaml)."""

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from covid_xray.config import load_config
from covid_xray.data.dataset import image_cache, split_of
from covid_xray.data.ingest import ingest
from covid_xray.data.split import patient_split
from covid_xray.evaluation.decision import OperatingPoint
from covid_xray.evaluation.ood import OODDetector, fit_detector
from covid_xray.modeling.features import predict_with_ood_features
from covid_xray.modeling.loader import pixel_batches
from covid_xray.modeling.training import train_model
from covid_xray.serving.predict import Predictor
from covid_xray.serving.predict_io import answer_records, summary_line, text_line
from covid_xray.serving.pyfunc import encode_image, log_model

ROOT = Path(__file__).resolve().parents[2]


def correlated(rng, n: int, dim: int = 12) -> np.ndarray:
    mixing = np.random.default_rng(0).normal(size=(dim, dim))
    return rng.normal(size=(n, dim)) @ mixing + 5.0


def band(fraction: float, n_val: int, n_test: int, sds: float = 3.5) -> float:
    """How far a new split's flag rate may stray from `fraction`: the threshold is a quantile of `n_val` distances and
    the rate a share of `n_test`, both binomial-like."""
    return sds * np.sqrt(fraction * (1 - fraction) * (1 / n_val + 1 / n_test))


def test_the_threshold_flags_the_configured_fraction_of_new_in_distribution_images_and_far_ones_all():
    rng = np.random.default_rng(1)
    train, val, test = correlated(rng, 3000), correlated(rng, 2000), correlated(rng, 2000)
    detector = OODDetector.fit(train, val, 0.05)
    assert detector.val_flag_rate == pytest.approx(0.05, abs=0.001)
    assert abs(detector.flag_rate(test) - 0.05) <= band(0.05, 2000, 2000)
    shifted = test + 2.0 * train.std(axis=0)  # every feature two standard deviations off
    assert detector.flag_rate(shifted) > 0.95
    distance, flagged = detector.flags(test[:5])
    assert np.array_equal(flagged, distance > detector.threshold)


def test_the_record_survives_save_and_load(tmp_path: Path):
    rng = np.random.default_rng(2)
    detector = OODDetector.fit(correlated(rng, 200), correlated(rng, 100), 0.01)
    detector.save(tmp_path / "ood.npz")
    loaded = OODDetector.load(tmp_path / "ood.npz")
    probe = correlated(rng, 10)
    assert loaded.summary() == detector.summary() and np.allclose(loaded.distance(probe), detector.distance(probe))
    assert loaded.summary()["method"] == "mahalanobis-ledoit-wolf" and loaded.n_train == 200


def test_fit_refuses_too_few_images_and_a_fraction_outside_zero_to_one():
    rng = np.random.default_rng(3)
    with pytest.raises(ValueError, match="needs at least 2 training and 1 validation image, got 1 and 5"):
        OODDetector.fit(correlated(rng, 1), correlated(rng, 5), 0.01)
    with pytest.raises(ValueError, match="ood fraction must be in"):
        OODDetector.fit(correlated(rng, 10), correlated(rng, 5), 1.0)


@pytest.fixture(scope="module")
def trained(shared_datasets, tmp_path_factory):
    """cnn-small of the default config, 2 epochs, on the shared data ingested and split as the pipeline does."""
    config = load_config(ROOT / "configs/default.yaml")
    cache = tmp_path_factory.mktemp("cache")
    config = config.model_copy(
        update={"data": config.data.model_copy(update={"root": str(shared_datasets), "cache_dir": str(cache)})}
    )
    model_config = next(m for m in config.models if m.name == "cnn-small").model_copy(update={"epochs": 2})
    manifest, _ = ingest(config.data, config.validation)
    split = patient_split(manifest, config.split)
    train, val, test = (split_of(split[split["split"] == s], config) for s in ("train", "val", "test"))
    result = train_model(
        model_config,
        train,
        val,
        n_classes=2,
        image_size=config.data.image_size,
        image_cache_key=image_cache(config).key,
        cache_dir=str(cache),
        verbose=0,
    )
    val_features, test_features = (predict_with_ood_features(result.model, pixel_batches(s))[1] for s in (val, test))
    return config, model_config, result.model, train, val_features, test_features, split


def test_in_distribution_test_images_are_flagged_at_about_the_configured_fraction(trained):
    config, model_config, model, train, val_features, test_features, _ = trained
    assert config.evaluation.ood_fraction == 0.01
    for fraction in (0.01, 0.05):
        evaluation = config.evaluation.model_copy(update={"ood_fraction": fraction})
        detector = fit_detector(
            model, model_config, train, val_features, config.model_copy(update={"evaluation": evaluation})
        )
        rate = detector.flag_rate(test_features)
        assert detector.n_train == len(train) and detector.n_val == len(val_features)
        assert abs(rate - fraction) <= band(fraction, len(val_features), len(test_features)), (fraction, rate)


@pytest.fixture
def store(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("ood")
    yield
    mlflow.set_tracking_uri(None)


def hostile_files(folder: Path, real: list[Path]) -> dict[str, Path]:
    """The images of issue 18 a model must not answer silently, and two real X-rays (one as a 0..1 float TIFF)."""
    rng = np.random.default_rng(0)
    files = {
        name: folder / name
        for name in ("one.png", "blank.png", "black.png", "noise.png", "stack.gif", "nan.tif", "float.tif", "good.png")
    }
    Image.new("L", (1, 1), 128).save(files["one.png"])
    Image.new("L", (7000, 7000), 255).save(files["blank.png"])
    Image.new("L", (512, 512), 0).save(files["black.png"])
    Image.fromarray(rng.integers(0, 256, (512, 512), dtype=np.uint8)).save(files["noise.png"])
    frames = [Image.open(path).convert("L").resize((512, 512)) for path in real[:3]]
    frames[0].save(files["stack.gif"], save_all=True, append_images=frames[1:])
    Image.fromarray(np.full((512, 512), np.nan, np.float32), mode="F").save(files["nan.tif"])
    good = Image.open(real[3]).convert("L")
    good.save(files["good.png"])
    Image.fromarray(np.asarray(good, np.float32) / 255.0, mode="F").save(files["float.tif"])
    return files


def test_predict_and_serving_refuse_or_flag_each_image_they_cannot_judge(trained, store, tmp_path):
    config, model_config, model, train, val_features, _, split = trained
    detector = fit_detector(model, model_config, train, val_features, config)
    test_paths = [Path(p) for p in split.loc[split["split"] == "test", "path"]]
    with mlflow.start_run():
        uri = log_model(
            model, image_cache(config).transform, OperatingPoint(), config.classes, test_paths[0], ood=detector
        )
    assert mlflow.models.get_model_info(uri).metadata["ood"] == detector.summary()
    files = hostile_files(tmp_path, test_paths)
    names = list(files)
    predictor = Predictor.from_uri(uri)
    assert predictor.model.ood.summary() == detector.summary()  # the record survived logging and loading
    answers = dict(zip(names, predictor.predict_files(list(files.values()))))
    refused = {name: str(answer) for name, answer in answers.items() if isinstance(answer, ValueError)}
    assert refused == {
        "one.png": "image too small: 1x1 (minimum side 64)",
        "blank.png": "nearly constant image",
        "black.png": "nearly constant image",
        "stack.gif": "multi-frame image (3 frames in one GIF file): send one image per file",
        "nan.tif": "float image with 262144 NaN or infinite pixels",
    }
    assert answers["noise.png"].out_of_distribution and answers["noise.png"].ood_distance > detector.threshold
    assert not answers["good.png"].out_of_distribution
    # the float TIFF is the same X-ray, read as such (not clipped to black): the same answer
    assert answers["float.tif"].covid_probability == pytest.approx(answers["good.png"].covid_probability, abs=0.02)
    assert answers["float.tif"].label == answers["good.png"].label

    records = answer_records([str(files[n]) for n in names], list(answers.values()), "m", uri)
    lines = dict(zip(names, map(text_line, records)))
    assert lines["one.png"].endswith("\tREFUSED\timage too small: 1x1 (minimum side 64)")
    assert "\tOUT-OF-DISTRIBUTION: unlike the training images" in lines["noise.png"]
    assert "OUT-OF-DISTRIBUTION" not in lines["good.png"] and "REFUSED" not in lines["good.png"]
    assert records[0] == {
        "path": str(files["one.png"]),
        "status": "refused",
        "model": "m",
        "model_uri": uri,
        "reason": "image too small: 1x1 (minimum side 64)",
    }
    assert summary_line(records) == "3 image(s) answered (1 out of distribution), 5 refused, 0 failed"

    served = mlflow.pyfunc.load_model(uri).predict(pd.DataFrame({"image": [encode_image(p) for p in files.values()]}))
    assert list(served["status"]) == ["refused" if n in refused else "ok" for n in names]
    assert dict(zip(names, served["reason"])) == {n: refused.get(n, "") for n in names}
    assert (
        served.loc[served["status"] == "refused", ["class", "covid_probability", "out_of_distribution"]]
        .isna()
        .all()
        .all()
    )
    answered = served["status"] == "ok"
    assert list(served.loc[answered, "out_of_distribution"]) == [
        answers[n].out_of_distribution for n in names if n not in refused
    ]
    assert np.allclose(
        served.loc[answered, "covid_probability"].astype(float),
        [answers[n].covid_probability for n in names if n not in refused],
        atol=1e-5,
    )
