from mlflow import MlflowClient

from covid_xray.ops.stack import ensure_experiment, runs_table_url


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
    assert (
        runs_table_url(uri, "runs", 5001)
        == f"http://127.0.0.1:5001/#/experiments/{experiment}/runs?workflowType=machine_learning"
    )
    assert runs_table_url(uri, "not-yet", 5001) == "http://127.0.0.1:5001/#/experiments?workflowType=machine_learning"


def test_mlflow_credentials_go_to_a_zenml_secret_not_into_the_tracker_configuration(tmp_path):
    """The local stack's tracker for a server with a login: the component holds {{secret.key}} references."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    script = (
        "import json; from covid_xray.ops.stack import *; prepare_environment(); "
        "ensure_local_stack('http://127.0.0.1:5999'); c = zenml_client(); "
        "print(json.dumps({'config': c.get_stack_component('experiment_tracker', TRACKER).configuration, "
        "'secret': c.get_secret(TRACKER_SECRET).secret_values}))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZENML_", "MLFLOW_"))}
    env |= {"COVID_XRAY_HOME": str(tmp_path / "home"), "MLFLOW_TRACKING_USERNAME": "alice"}
    shown = []
    for password in ("first-password", "second-password"):  # a changed password updates the secret
        done = subprocess.run(
            [sys.executable, "-c", script],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=300,
            env=env | {"MLFLOW_TRACKING_PASSWORD": password},
        )
        assert done.returncode == 0, done.stderr[-2000:]
        shown.append(json.loads(done.stdout.strip().splitlines()[-1]))
    for state, password in zip(shown, ("first-password", "second-password")):
        assert state["secret"] == {"username": "alice", "password": password}
        assert state["config"]["tracking_password"] == "{{covid_xray_mlflow.password}}"
        assert state["config"]["tracking_username"] == "{{covid_xray_mlflow.username}}"
        assert "password" not in json.dumps(state["config"]).replace("tracking_password", "").replace(".password", "")
