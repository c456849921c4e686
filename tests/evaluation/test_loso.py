from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import yaml
from fixtures import write_actualmed, write_hannover, write_ieee8023

from covid_xray.config import parse_config
from covid_xray.data.ingest import ingest
from covid_xray.evaluation.loso import fold_rows, loso_folds, run_loso, summarise


def test_each_source_is_held_out_once_and_scored_as_its_own_run(tmp_path: Path, monkeypatch):
    write_ieee8023(tmp_path / "data", n_per_class=8)
    write_actualmed(tmp_path / "data", n_per_class=6)
    raw = yaml.safe_load(Path("configs/tiny.yaml").read_text())
    raw["data"] |= {
        "root": str(tmp_path / "data"),
        "cache_dir": str(tmp_path / "cache"),
        "sources": [{"reader": "ieee8023", "path": "ieee8023"}, {"reader": "actualmed", "path": "actualmed"}],
    }
    config = parse_config(raw)
    manifest, _ = ingest(config.data, config.validation)
    assert loso_folds(manifest) == ["actualmed", "ieee8023"]
    assert loso_folds(manifest, min_images=13) == ["ieee8023"]

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        mlflow.set_experiment("loso")
        results = run_loso(config, [config.models[1]], manifest, "loso test")
        runs = mlflow.search_runs(experiment_names=["loso"], filter_string="tags.`loso.held_out` != ''")
    finally:
        mlflow.set_tracking_uri(None)
    table, mean = results["cnn-tiny"]
    assert table["held_out"].tolist() == ["actualmed", "ieee8023"]
    assert (table["n"] == [12, 16]).all() and table["both_labels"].all()
    assert (table["balanced_accuracy_ci_low"] <= table["balanced_accuracy_ci_high"]).all()  # patient-group intervals
    assert table["threshold"].between(0, 1).all()  # each fold's operating point, from its own validation rows
    assert (table["train_excluded_shared_group"] == 0).all()  # no patient of one source is in the other
    assert 0 <= mean <= 1 and mean == table["balanced_accuracy"].mean()
    assert sorted(runs["tags.loso.held_out"]) == ["actualmed", "ieee8023"]
    # Fold runs a human can tell apart in the runs table: the fold first, then the variant; a description with numbers.
    assert sorted(runs["tags.mlflow.runName"]) == [
        "fold: without actualmed · cnn-tiny",
        "fold: without ieee8023 · cnn-tiny",
    ]
    for _, run in runs.iterrows():
        fold = table.set_index("held_out").loc[run["tags.loso.held_out"]]
        assert run["tags.mlflow.note.content"].startswith(
            f"Leave-one-source-out fold: cnn-tiny trained on {fold['train_images']} images without source "
            f"**{run['tags.loso.held_out']}**, scored on its {fold['n']} images"
        )
        assert f"balanced accuracy {fold['balanced_accuracy']:.3f}" in run["tags.mlflow.note.content"]
        # Keras's per-epoch numbers are grouped under epoch/, after the fold's own metrics
        keras_metrics = {c for c in runs.columns if c.startswith("metrics.epoch/")}
        assert {"metrics.epoch/loss", "metrics.epoch/val_argmax_accuracy"} <= keras_metrics
        assert not [c for c in runs.columns if c.startswith(("metrics.validation_", "metrics.loss"))]
    # how often the held-out source is flagged out of distribution, by a record fitted on the fold's own splits
    assert table["ood_flag_rate"].between(0, 1).all() and (table["ood_threshold"] > 0).all()
    assert sorted(runs["metrics.ood_flag_rate"]) == sorted(table["ood_flag_rate"])


def test_fold_trains_on_no_patient_group_that_has_an_image_in_the_held_out_source():
    manifest = pd.DataFrame(
        {
            "source": ["a", "a", "b", "b", "b", "c", "c"],
            "group_id": ["p1", "p2", "p1", "p3", "p3", "p2", "p4"],
        }
    )
    test, train, excluded = fold_rows(manifest, "a")
    assert list(test.index) == [0, 1]
    # b's p1 and c's p2 are patients (or copies) also in a: out of training, and counted
    assert list(train.index) == [3, 4, 6] and excluded == 2
    assert not set(train["group_id"]) & set(test["group_id"])
    _, train_b, excluded_b = fold_rows(manifest, "b")
    assert list(train_b.index) == [1, 5, 6] and excluded_b == 1


def test_summary_mean_ignores_sources_with_one_label():
    table, mean = summarise(
        [
            {"held_out": "a", "balanced_accuracy": 0.8, "both_labels": True},
            {"held_out": "b", "balanced_accuracy": float("nan"), "both_labels": False},
            {"held_out": "c", "balanced_accuracy": 0.6, "both_labels": True},
        ]
    )
    assert mean == 0.7 and len(table) == 3


def test_a_covid_only_source_held_out_is_a_sensitivity_only_fold_outside_the_mean(tmp_path: Path):
    write_ieee8023(tmp_path / "data", n_per_class=8)
    write_actualmed(tmp_path / "data", n_per_class=4)
    write_hannover(tmp_path / "data", n_patients=6, images_per_patient=2)
    raw = yaml.safe_load(Path("configs/tiny.yaml").read_text())
    raw["data"] |= {
        "root": str(tmp_path / "data"),
        "cache_dir": str(tmp_path / "cache"),
        "sources": [
            {"reader": "ieee8023", "path": "ieee8023"},
            {"reader": "hannover", "path": "hannover"},
            {"reader": "actualmed", "path": "actualmed"},
        ],
    }
    raw["evaluation"] = {"loso_min_images": 12}  # actualmed (8 images) only trains
    config = parse_config(raw)
    manifest, _ = ingest(config.data, config.validation)
    assert loso_folds(manifest, 12) == ["hannover", "ieee8023"]
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        mlflow.set_experiment("loso")
        table, mean = run_loso(config, [config.models[1]], manifest, "loso test")["cnn-tiny"]
    finally:
        mlflow.set_tracking_uri(None)
    hannover = table.set_index("held_out").loc["hannover"]
    assert hannover["n"] == hannover["n_covid"] == 12 and not hannover["both_labels"]
    assert 0 <= hannover["sensitivity"] <= 1  # the one number a COVID-only source can give
    assert np.isnan([hannover["specificity"], hannover["balanced_accuracy"], hannover["roc_auc"]]).all()
    assert table.set_index("held_out").loc["ieee8023", "both_labels"]
    assert mean == table.set_index("held_out").loc["ieee8023", "balanced_accuracy"]


def test_pipeline_folds_are_cheaper_and_only_of_the_listed_variants():
    from covid_xray.evaluation.loso import fold_models

    raw = yaml.safe_load(Path("configs/tiny.yaml").read_text())
    raw["models"][1] |= {"epochs": 15}
    raw["evaluation"] = {"loso": True, "loso_epochs": 5, "loso_models": ["cnn-tiny"]}
    [model] = fold_models(parse_config(raw))
    assert (model.name, model.epochs, model.conv_filters) == ("cnn-tiny", 5, [8, 16])
    raw["evaluation"] = {"loso": True}
    assert [m.epochs for m in fold_models(parse_config(raw))] == [2, 15]
