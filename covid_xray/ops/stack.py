"""Project state (ZenML and MLflow) kept in one ignored folder, and the local ZenML stack.

By default everything lives in `.covid-xray/` under the project root: ZenML's config and SQLite
store, and MLflow's SQLite tracking store and artifacts. COVID_XRAY_HOME moves it (tests use a
temporary one). The stack is registered on first use, so users never run `zenml` by hand.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
STACK = "covid-xray-local"
TRACKER = "covid-xray-mlflow"
# MLflow 3's UI opens an experiment by its kind; untagged ones look like GenAI work (traces overview, empty here).
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
PROXY_MULTIPART = ("MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD", "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD")


def home() -> Path:
    return Path(os.environ.get("COVID_XRAY_HOME", Path.cwd() / ".covid-xray")).resolve()


def tracking_uri(configured: str | None = None) -> str:
    """MLFLOW_TRACKING_URI, else the config's uri, else the project's embedded SQLite store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or configured or f"sqlite:///{home() / 'mlflow.db'}"


def zenml_environment() -> None:
    """Point ZenML at the project state (environment only, nothing is created). ZenML reads some of these settings
    when it is imported: call before importing zenml."""
    state = home()
    os.environ.setdefault("ZENML_CONFIG_PATH", str(state / "zenml"))
    # The ZenML repository (active stack) lives in the state folder too; step code is found from the project root.
    os.environ.setdefault("ZENML_REPOSITORY_PATH", str(state))
    os.environ.setdefault("ZENML_CUSTOM_SOURCE_ROOT", str(PROJECT_ROOT))
    os.environ.setdefault("ZENML_LOGGING_VERBOSITY", "INFO")


def prepare_environment(configured_uri: str | None = None) -> str:
    """Point ZenML and MLflow at the project state and create its folder; returns the tracking URI."""
    home().mkdir(parents=True, exist_ok=True)
    zenml_environment()
    uri = tracking_uri(configured_uri)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    # Artifacts stream through the tracking server unless the user asks otherwise. A server whose artifact store is
    # S3 advertises direct chunked transfers by presigned URLs, and the compose stack's point at its private network
    # (http://s3:9000): a client on the host retried each chunk for minutes, then failed.
    for name in PROXY_MULTIPART:
        os.environ.setdefault(name, "false")
    return uri


def ensure_experiment(name: str) -> str:
    """Create the MLflow experiment if needed, marked as model training; with a SQLite store its artifacts go to
    the state folder (MLflow's default would be ./mlruns in whatever directory the command ran from). Returns its id."""
    import mlflow

    client = mlflow.MlflowClient()
    found = client.get_experiment_by_name(name)
    if found is not None:
        for key, value in EXPERIMENT_KIND.items():
            if key not in found.tags:  # a kind chosen in the UI stays
                client.set_experiment_tag(found.experiment_id, key, value)
        return found.experiment_id
    location = None
    if mlflow.get_tracking_uri().startswith("sqlite:"):
        location = (home() / "mlartifacts").as_uri()
    return client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_KIND)


def runs_table_url(uri: str, experiment: str, port: int) -> str:
    """The MLflow UI's runs table of `experiment`. MLflow 3.17's UI picks GenAI or model-training pages by a
    workflow type kept in the browser (default GenAI), not by the experiment's kind: the link names it."""
    import mlflow

    found = mlflow.MlflowClient(uri).get_experiment_by_name(experiment)
    page = f"experiments/{found.experiment_id}/runs" if found is not None else "experiments"
    return f"http://127.0.0.1:{port}/#/{page}?workflowType=machine_learning"


TRACKER_SECRET = "covid_xray_mlflow"  # noqa: S105 - the name of a ZenML secret, not a secret


def tracker_credentials() -> dict[str, str]:
    """The MLflow server's credentials from the environment: MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and
    MLFLOW_TRACKING_PASSWORD; placeholders when unset, which a server without authentication ignores."""
    if os.environ.get("MLFLOW_TRACKING_TOKEN"):
        return {"token": os.environ["MLFLOW_TRACKING_TOKEN"]}
    return {
        "username": os.environ.get("MLFLOW_TRACKING_USERNAME", "covid-xray"),
        "password": os.environ.get("MLFLOW_TRACKING_PASSWORD", "no-auth"),
    }


def tracker_configuration(uri: str) -> dict[str, str]:
    """The MLflow tracker's ZenML configuration for `uri`. ZenML wants credentials for an http(s) server: the
    configuration holds only {{secret.key}} references to the ZenML secret TRACKER_SECRET (ensure_local_stack
    stores tracker_credentials() there), never the values."""
    if not uri.startswith(("http://", "https://")):
        return {"tracking_uri": uri}
    return {
        "tracking_uri": uri,
        **{f"tracking_{key}": f"{{{{{TRACKER_SECRET}.{key}}}}}" for key in tracker_credentials()},
    }


def store_tracker_secret(client) -> None:
    """Create or update the ZenML secret with the MLflow credentials of the environment."""
    values = tracker_credentials()
    try:
        found = client.get_secret(TRACKER_SECRET)
    except KeyError:
        client.create_secret(TRACKER_SECRET, values)
        return
    if found.secret_values != values:  # e.g. a token instead of a password now
        client.update_secret(
            found.id, add_or_update_values=values, remove_values=sorted(set(found.secret_values) - set(values))
        )


def zenml_client():
    from zenml.client import Client
    from zenml.exceptions import InitializationException

    root = home()
    if not (root / ".zen").is_dir():
        with contextlib.suppress(InitializationException):  # another process initialised it meanwhile
            Client.initialize(root=root)
    return Client()


def activate_stack(name: str) -> None:
    """Activate a registered stack (e.g. one from infra/stacks/), or raise ValueError naming the known ones."""
    client = zenml_client()
    stacks = sorted(s.name for s in client.list_stacks(size=100).items)
    if name not in stacks:
        raise ValueError(
            f"ZenML stack {name!r} is not registered (have {stacks}); "
            "register it with `python infra/register_stack.py infra/stacks/<recipe>.yaml`"
        )
    if client.active_stack_model.name != name:
        client.activate_stack(name)


def ensure_local_stack(uri: str) -> None:
    """Initialise the ZenML repository and register/activate the local stack with an MLflow tracker at `uri`."""
    from zenml.enums import StackComponentType

    client = zenml_client()
    tracker_type = StackComponentType.EXPERIMENT_TRACKER
    existing = {c.name: c for c in client.list_stack_components(type=tracker_type, size=100).items}
    configuration = tracker_configuration(uri)
    if len(configuration) > 1:
        store_tracker_secret(client)
    if TRACKER not in existing:
        client.create_stack_component(TRACKER, "mlflow", tracker_type, configuration=configuration)
    elif any(existing[TRACKER].configuration.get(key) != value for key, value in configuration.items()):
        # Credentials of the previous URI would clash with a token (ZenML wants exactly one method).
        reset = {key: None for key in ("tracking_username", "tracking_password", "tracking_token")}
        client.update_stack_component(TRACKER, tracker_type, configuration={**reset, **configuration})
    stacks = {s.name for s in client.list_stacks(size=100).items}
    if STACK not in stacks:
        client.create_stack(
            STACK,
            components={
                StackComponentType.ORCHESTRATOR: "default",
                StackComponentType.ARTIFACT_STORE: "default",
                tracker_type: TRACKER,
            },
        )
    if client.active_stack_model.name != STACK:
        client.activate_stack(STACK)
