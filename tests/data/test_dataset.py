"""What a run trains on under each task: which findings are kept, and what each is labelled."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures import ROBUST, ROOT, write_ieee8023

from covid_xray.config import ConfigError, load_config, parse_config
from covid_xray.data.dataset import split_of
from covid_xray.data.ingest import ingest, read_sources
from covid_xray.modeling.loader import TrainingBatches


def test_the_default_run_keeps_every_sources_pneumonia_images(shared_datasets: Path):
    config = load_config(ROOT / "configs/default.yaml")
    assert config.task == "covid_vs_rest" and config.classes == ["covid", "non_covid"]
    assert config.data.findings == ["covid", "normal", "pneumonia"]
    data = config.data.model_copy(update={"root": str(shared_datasets)})
    rows, drops = read_sources(data)
    truth = pd.read_csv(shared_datasets / "manifest.csv")
    listed = rows[rows["label"] == "pneumonia"]["source"].value_counts().to_dict()
    assert set(listed) == {"ieee8023", "darkcovidnet", "covid19-image-dataset"}
    assert listed["darkcovidnet"] == int(((truth["source"] == "darkcovidnet") & (truth["label"] == "pneumonia")).sum())
    assert not drops["reason"].str.contains("not in classes").any()


def raw_config(tmp_path: Path, task: str) -> dict:
    return {
        "task": task,
        "data": {
            "root": str(tmp_path / "data"),
            "cache_dir": str(tmp_path / "cache"),
            "image_size": 64,
            "sources": [{"reader": "ieee8023", "path": "ieee8023"}],
            "preprocess": ROBUST.model_dump(),
        },
        "validation": {"min_side": 32},
        "models": [{"name": "c", "kind": "cnn"}],
    }


def test_pneumonia_is_a_negative_under_covid_vs_rest_and_its_own_class_under_three_class(tmp_path: Path):
    write_ieee8023(tmp_path / "data", n_per_class=6, labels=("covid", "normal", "pneumonia"))
    rest = parse_config(raw_config(tmp_path, "covid_vs_rest"))
    manifest, _ = ingest(rest.data, rest.validation)
    assert manifest["label"].value_counts().to_dict() == {"covid": 6, "normal": 6, "pneumonia": 6}
    manifest = manifest.assign(source=np.where(np.arange(len(manifest)) % 2, "a", "b"))

    split = split_of(manifest, rest)
    expected = np.where(manifest["label"] == "covid", 0, 1)  # covid, non_covid
    np.testing.assert_array_equal(split.labels, expected)
    np.testing.assert_array_equal(split.findings, manifest["label"])
    # balanced batches draw over (source, finding) cells: pneumonia is not folded into the normals
    batches = TrainingBatches(split, 4, "source_label")
    assert len(np.unique(batches.cells)) == 6

    three = parse_config(raw_config(tmp_path, "three_class"))
    assert three.classes == ["covid", "normal", "pneumonia"]
    labels = split_of(manifest, three).labels
    np.testing.assert_array_equal(labels, manifest["label"].map({"covid": 0, "normal": 1, "pneumonia": 2}))


def test_a_plain_recipe_trains_on_covid_and_normal_and_is_scored_on_every_finding(tmp_path: Path):
    raw = raw_config(tmp_path, "covid_vs_rest")
    raw["models"] = [{"name": "plain", "kind": "cnn", "train_findings": ["covid", "normal"]}]
    config = parse_config(raw)
    write_ieee8023(tmp_path / "data", n_per_class=4, labels=("covid", "normal", "pneumonia"))
    manifest, _ = ingest(config.data, config.validation)
    split = split_of(manifest, config)
    trained_on = split.with_findings(config.models[0].train_findings)
    assert sorted(set(trained_on.findings)) == ["covid", "normal"] and len(trained_on) == 8
    assert split.with_findings(None) is split and len(split) == 12  # what the test split scores
    raw["models"][0]["train_findings"] = ["normal", "pneumonia"]
    with pytest.raises(ConfigError, match="train_findings must be covid and at least one other"):
        parse_config(raw)
