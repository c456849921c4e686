"""The model card from a constructed pipeline run and model run in a temporary SQLite store."""

from pathlib import Path

import pandas as pd
import pytest
from fixtures import ROOT
from mlflow import MlflowClient

from covid_xray.config import load_config
from covid_xray.data.provenance import load_registry, source_records
from covid_xray.registry.model_card import CARD_ARTIFACT, log_model_card, model_card

MODEL = "covid-xray-card-test"


@pytest.fixture
def client(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = MlflowClient(uri)
    client.create_experiment("training", artifact_location=(tmp_path / "artifacts").as_uri())
    client.create_registered_model(MODEL)
    return client


def manifest() -> pd.DataFrame:
    rows = []
    for source, label, counts in (
        ("hospital-a", "covid", (6, 2, 2)),
        ("hospital-b", "normal", (8, 2, 3)),
        ("hospital-b", "covid", (1, 0, 1)),
    ):
        for split, n in zip(("train", "val", "test"), counts):
            rows += [
                {
                    "sha256": f"{source}{label}{split}{i}",
                    "source": source,
                    "label": label,
                    "split": split,
                    "group_id": f"{source}-{i}",
                }
                for i in range(n)
            ]
    return pd.DataFrame(rows)


def model_run(client, parent_id=None, **recorded) -> str:
    experiment = client.get_experiment_by_name("training").experiment_id
    tags = {
        "model.variant": "cnn-small",
        "data.manifest_hash": "abc123def456",
        "data.dvc_md5": "d41d8cd98f00",
        "git.commit": "0123456789abcdef0123",
    } | recorded.get("tags", {})
    if parent_id:
        tags["mlflow.parentRunId"] = parent_id
    run_id = client.create_run(experiment, tags=tags).info.run_id
    for key, value in ({"model.kind": "cnn", "data.image_size": "224"} | recorded.get("params", {})).items():
        client.log_param(run_id, key, value)
    for key, value in recorded.get("metrics", {}).items():
        client.log_metric(run_id, key, value)
    for path, text in recorded.get("artifacts", {}).items():
        client.log_text(run_id, text, path)
    return run_id


def register(client, run_id: str, decision: str | None = None) -> str:
    version = client.create_model_version(MODEL, f"runs:/{run_id}/model", run_id=run_id, tags={"run_id": run_id})
    if decision:
        client.set_model_version_tag(MODEL, version.version, "promotion_decision", decision)
        client.set_model_version_tag(
            MODEL, version.version, "promotion_reasons", "accuracy (lower 95% CI) 0.81 >= 0.80"
        )
    return version.version


def full_record(client) -> str:
    experiment = client.get_experiment_by_name("training").experiment_id
    parent = client.create_run(experiment).info.run_id
    client.log_text(parent, manifest().to_csv(index=False), "data/manifest.csv")
    # what the ingest step records for the main job on the team store (data/raw linked to data/store)
    data = load_config(ROOT / "configs/default.yaml").data.model_copy(update={"root": str(ROOT / "data/store")})
    client.log_dict(parent, source_records(data, load_registry(ROOT / "data/sources.yaml")), "data/sources.json")
    client.log_metric(parent, "loso_mean_balanced_accuracy.cnn-small", 0.6125)
    loso = pd.DataFrame(
        {"held_out": ["hospital-a", "hospital-b"], "n": [10, 15], "balanced_accuracy": [float("nan"), 0.6125]}
    )
    client.log_text(parent, loso.to_csv(index=False), "loso/cnn-small.csv")
    per_source = pd.DataFrame(
        {"source": ["hospital-a", "hospital-b"], "n": [2, 4], "n_covid": [2, 1], "accuracy": [1.0, 0.75]}
    )
    metrics = {
        "test_n": 6,
        "test_n_covid": 3,
        "test_accuracy": 0.8333,
        "test_accuracy_ci_low": 0.52,
        "test_accuracy_ci_high": 0.97,
        "test_sensitivity": 0.6667,
        "test_sensitivity_ci_low": 0.2,
        "test_sensitivity_ci_high": 0.94,
        "test_roc_auc": 0.9,
        "shortcut.source_accuracy": 0.93,
        "shortcut.source_majority_rate": 0.6,
        "shortcut.cramers_v_train": 0.71,
        "gradcam.border_share": 0.7094,
        "gradcam.border_area_share": 0.4138,
        "gradcam.border_band": 0.12,
        "gradcam.images": 6,
    }
    run_id = model_run(
        client,
        parent,
        metrics=metrics,
        params={
            "operating_point.threshold": "0.37",
            "operating_point.rule": "youden",
            "operating_point.calibration": "temperature",
        },
        tags={
            "warning.shortcut": "shortcut risk: the model's features predict the source",
            "warning.edge_attention": "x",
        },
        artifacts={"evaluation/per_source.csv": per_source.to_csv(index=False)},
    )
    return register(client, run_id, "promoted")


def test_card_says_what_the_runs_recorded(client):
    version = full_record(client)
    client.set_registered_model_alias(MODEL, "champion", version)
    card = model_card(client, MODEL, version)
    assert card.startswith(f"# Model card: {MODEL} version {version} (@champion)\n")
    assert "Variant `cnn-small` (cnn, 224 px input), task `not recorded`" in card
    assert "data version `abc123def456`" in card
    assert "## Intended use" in card and "Diagnosing, screening or triaging patients" in card
    assert "25 images from 2 source(s)" in card
    assert "| hospital-a | covid | 6 | 2 | 2 | 10 |" in card and "| hospital-b | normal | 8 | 2 | 3 | 13 |" in card
    assert "at least 0.370 (rule `youden`, chosen on the validation split; calibration `temperature`)" in card
    assert "(6 images, 3 covid)" in card and "- accuracy: 0.833 (95% CI 0.520–0.970)" in card
    assert (
        "- roc auc: 0.900\n" in card and "specificity" not in card.split("## Internal test metrics")[1].split("##")[0]
    )
    assert "mean balanced accuracy 0.613" in card and "| hospital-b | 15 | 0.613 |" in card
    assert "accuracy 0.93 (majority rate 0.60)" in card and "**Warning:** shortcut risk" in card
    looks = card.split("## Where the model looks\n")[1].split("\n## ")[0]
    assert (
        "71% of the Grad-CAM mass for covid lies in the outer 12% band of the image, which is 41% of its area" in looks
    )
    assert "(mean over 6 test images)" in looks and "**Warning:** more of it on the edges than an even spread" in looks
    assert "Test sources with images of one class only (hospital-a)" in card
    assert "promoted: accuracy (lower 95% CI) 0.81 >= 0.80" in card


def test_card_lists_each_source_with_its_commit_and_licence_and_says_non_commercial_terms_apply(client):
    card = model_card(client, MODEL, full_record(client))
    section = card.split("## Data sources and licences\n")[1].split("\n## ")[0]
    assert "Fetched from: the team data store: copies of the commit's files, downscaled to 512 px" in section
    assert (
        "| hannover | ml-workgroup/covid-19-image-repository | ad7ab099b425f16e06bba22322336b7d6a732965 | CC BY 3.0"
        in section
    )
    rows = [line for line in section.splitlines() if line.startswith("| ") and "source" not in line]
    assert [row.split(" | ")[0] for row in rows] == [
        "| ieee8023",
        "| hannover",
        "| actualmed",
        "| darkcovidnet",
        "| covid19-image-dataset",
    ]
    assert all(len(row.split(" | ")[2]) == 40 for row in rows)  # every source's full commit
    assert (
        "| actualmed | agchung/Actualmed-COVID-chestxray-dataset | 27240dd8dec9454bc97f9f3c0c432ef434de2517 | none:"
        in section
    )
    assert "**Non-commercial or unstated terms apply** to ieee8023 (some images), actualmed (all)" in section


def test_a_run_that_recorded_little_gets_a_card_that_says_so(client):
    version = register(client, model_run(client))
    card = model_card(client, MODEL, version)
    assert "no data manifest: the composition is unknown" in card
    assert "recorded no data sources: where the data came from, and its licences, are unknown" in card
    assert "No operating point was recorded for this run: the class is the covid probability >= 0.5." in card
    assert "The run recorded no test metrics." in card and "Not run for this model" in card
    assert "## Shortcut check\n\nNot recorded for this run." in card and "## Promotion" not in card


def test_card_names_the_training_recipe_and_the_task(client):
    params = {"task": "three_class", "model.adversarial.weight": "0.3", "model.members": "5"}
    metrics = {"gradcam.images": 0.0, "gradcam.border_area_share": 0.41}  # every Grad-CAM map was empty
    card = model_card(client, MODEL, register(client, model_run(client, params=params, metrics=metrics)))
    assert "(cnn, 224 px input, source-adversarial head (weight 0.3), ensemble of 5 seeds), task `three_class`" in card
    assert "Grad-CAM found no positive evidence for covid in any of the measured test images" in card


def test_logged_card_is_an_artifact_of_the_run_and_the_version_description(client, tmp_path):
    version = full_record(client)
    text = log_model_card(client, MODEL, version)
    found = client.get_model_version(MODEL, version)
    assert found.description == text
    assert CARD_ARTIFACT in {a.path for a in client.list_artifacts(found.run_id)}
    downloaded = client.download_artifacts(found.run_id, CARD_ARTIFACT, str(tmp_path))
    assert Path(downloaded).read_text(encoding="utf-8") == text
