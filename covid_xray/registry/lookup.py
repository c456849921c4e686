"""Which registered version a command means (`--alias`, `--model-version`), and, when there is none, a message that
says what there is instead: the challenger and why the gate did not promote it, the aliases and versions that exist.

`predict`, `card` and `serve` resolve their model here, so they answer a missing model with the same words."""

from __future__ import annotations

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from ..serving.errors import ModelNotFound
from .aliases import CHALLENGER, CHAMPION, by_alias

MISSING = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


def find_version(client: MlflowClient, name: str, alias: str | None = None, version: str | None = None) -> ModelVersion:
    """The registered version `version`, or else the one under `alias` (default: the champion).

    A `ModelNotFound` says what exists instead, and how to use it."""
    try:
        client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code not in MISSING:
            raise
        raise ModelNotFound(
            f"no model registered as {name} yet: run `covid-xray run` first, "
            f"or check the tracking URI ({mlflow.get_tracking_uri()})"
        ) from None
    if version is not None:
        try:
            return client.get_model_version(name, str(version))
        except MlflowException as error:
            if error.error_code not in MISSING:
                raise
            raise ModelNotFound(f"{name} has no version {version}: {inventory(client, name)}") from None
    alias = alias or CHAMPION
    found = by_alias(client, name, alias)
    if found is not None:
        return found
    challenger = by_alias(client, name, CHALLENGER) if alias == CHAMPION else None
    if challenger is None:
        raise ModelNotFound(f"no version of {name} holds the alias {alias!r}: {inventory(client, name)}")
    raise ModelNotFound(
        f"no champion yet: version {challenger.version}{_variant(client, challenger)} is registered as challenger, "
        f"not promoted: {gate_reasons(challenger)}; use `--alias challenger`, or promote it by hand with "
        f"`covid-xray promote --run {challenger.run_id} --force REASON`"
    )


def gate_reasons(version: ModelVersion) -> str:
    """Why the gate decided as it did for `version`, without the line on how the candidate was chosen."""
    reasons = [r for r in version.tags.get("promotion_reasons", "").split("; ") if r and not r.startswith("candidate ")]
    return "; ".join(reasons) or "no gate decision recorded"


def inventory(client: MlflowClient, name: str) -> str:
    """The versions of `name` and the aliases they hold, in one line."""
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
    aliases = client.get_registered_model(name).aliases or {}
    held = ", ".join(f"{alias} → v{number}" for alias, number in sorted(aliases.items())) or "none"
    numbers = ", ".join(str(v) for v in versions) or "none"
    return f"versions {numbers}; aliases {held}"


def _variant(client: MlflowClient, version: ModelVersion) -> str:
    try:
        variant = client.get_run(version.run_id).data.tags.get("model.variant") if version.run_id else None
    except MlflowException:
        variant = None
    return f" ({variant})" if variant else ""
