from mlflow import MlflowClient

from covid_xray.stack import ensure_experiment, runs_table_url


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


def test_the_ui_link_opens_the_experiments_runs_table_in_model_training_mode(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment = MlflowClient(uri).create_experiment("runs", artifact_location=(tmp_path / "a").as_uri())
    assert runs_table_url(uri, "runs", 5001) == f"http://127.0.0.1:5001/#/experiments/{experiment}/runs?workflowType=machine_learning"
    assert runs_table_url(uri, "not-yet", 5001) == "http://127.0.0.1:5001/#/experiments?workflowType=machine_learning"
