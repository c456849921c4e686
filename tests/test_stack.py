from mlflow import MlflowClient

from covid_xray.stack import ensure_experiment


def test_experiments_are_marked_as_model_training_so_the_ui_opens_on_runs(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("COVID_XRAY_HOME", str(tmp_path / "home"))
    client = MlflowClient(uri)
    created = ensure_experiment("new")
    assert client.get_experiment(created).tags["mlflow.experimentKind"] == "custom_model_development"
    assert client.get_experiment(created).artifact_location == (tmp_path / "home" / "mlartifacts").as_uri()
    old = client.create_experiment("made-before", artifact_location=(tmp_path / "a").as_uri())  # by an older version
    assert ensure_experiment("made-before") == old
    assert client.get_experiment(old).tags["mlflow.experimentKind"] == "custom_model_development"
    client.set_experiment_tag(old, "mlflow.experimentKind", "genai_development")  # the user's choice in the UI stays
    ensure_experiment("made-before")
    assert client.get_experiment(old).tags["mlflow.experimentKind"] == "genai_development"
