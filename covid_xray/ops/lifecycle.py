"""ZenML model stages follow the MLflow aliases, which are the source of truth.

Every move (the pipeline's promotion step, `covid-xray promote`, `covid-xray rollback`) ends with
`follow_aliases`: the ZenML model version that mirrors the MLflow `champion` is `production`, the
`challenger` is `staging`, and every other mirrored version that was production or staging is `archived`.
A ZenML model version mirrors MLflow version N when its run metadata has `mlflow_version` N (the pipeline's
promotion step logs it); a version promoted by hand that no pipeline mirrored gets a mirror named
`mlflow-vN`.
"""

from __future__ import annotations

from typing import Any

from mlflow import MlflowClient
from zenml import log_metadata
from zenml.enums import ModelStages

from ..registry.aliases import CHALLENGER, CHAMPION, by_alias
from .stack import zenml_client


def wanted_stages(client: MlflowClient, name: str) -> dict[str, str]:
    """{MLflow version: ZenML stage} for the versions that hold an alias."""
    stages = {}
    for alias, stage in ((CHALLENGER, "staging"), (CHAMPION, "production")):  # champion wins if both
        found = by_alias(client, name, alias)
        if found is not None:
            stages[str(found.version)] = stage
    return stages


def mirrors(zenml: Any, name: str) -> dict[str, Any]:
    """{MLflow version: newest ZenML model version that mirrors it} of ZenML model `name`."""
    found = {}
    for version in zenml.list_model_versions(model=name, size=1000, hydrate=True, sort_by="asc:number").items:
        mlflow_version = version.run_metadata.get("mlflow_version")
        if mlflow_version is not None:
            found[str(mlflow_version)] = version
    return found


def follow_aliases(client: MlflowClient, name: str, zenml: Any = None) -> dict[str, str]:
    """Set the ZenML stages of model `name` from the MLflow aliases; returns {MLflow version: stage} it changed.

    `zenml` is a ZenML Client (default: the project's, covid_xray.ops.stack.zenml_client)."""
    zenml = zenml or zenml_client()
    wanted = wanted_stages(client, name)
    try:
        zenml.get_model(name)
    except KeyError:
        zenml.create_model(name, description="COVID-19 detector for chest X-rays")
    found = mirrors(zenml, name)
    for mlflow_version in wanted:
        if mlflow_version not in found:
            created = zenml.create_model_version(
                name, name=f"mlflow-v{mlflow_version}", description="mirror of an MLflow version promoted by hand"
            )
            log_metadata(
                metadata={"mlflow_registered_model": name, "mlflow_version": mlflow_version},
                model_version_id=created.id,
            )
            found[mlflow_version] = created
    applied = {}
    for mlflow_version, version in found.items():
        stage = wanted.get(mlflow_version)
        if stage is None and str(version.stage) in ("production", "staging"):
            stage = "archived"
        if stage is not None and str(version.stage) != stage:
            zenml.update_model_version(name, version.id, stage=ModelStages(stage), force=True)
            applied[mlflow_version] = stage
    return applied


def zenml_stages(name: str) -> dict[str, str]:
    """{MLflow version: ZenML stage} of the mirrored versions (for checks and `covid-xray history`)."""
    zenml = zenml_client()
    try:
        zenml.get_model(name)
    except KeyError:  # no ZenML model of that name: nothing mirrors it
        return {}
    return {v: str(version.stage) for v, version in mirrors(zenml, name).items()}
