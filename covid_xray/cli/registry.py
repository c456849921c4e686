"""`covid-xray card`, `rollback` and `history`: a registered model's card, the rollback to the previous champion, and
the champion's lineage of decisions and alias moves."""

from __future__ import annotations

import json

import click
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from ..ops.lifecycle import follow_aliases, zenml_stages
from ..registry.aliases import CHALLENGER, CHAMPION, PREVIOUS, LeaseBusy, LeaseLost, by_alias, pending_move
from ..registry.aliases import history as history_of
from ..registry.aliases import rollback as rollback_to_previous
from ..registry.model_card import model_card
from .common import fail, model_name_of, one_model_choice, store
from .registered import picked_version


@click.command()
@click.option("--model-name", default=None, help="Registered model [default: the config's, else covid-xray].")
@click.option("--alias", default=None, help="Registry alias [default: champion].")
@click.option("--model-version", default=None, help="Registered version number instead of an alias.")
@click.option("--config", "config_path", default=None, help="Take the tracking URI and model name from this config.")
def card(model_name: str | None, alias: str | None, model_version: str | None, config_path: str | None) -> None:
    """Print the model card of a registered version.

    Intended use, data, operating point, metrics with intervals, leave-one-source-out, known failure modes."""
    one_model_choice(alias=alias, model_version=model_version)
    model_name, version, _ = picked_version(model_name, alias, model_version, config_path)
    try:
        text = model_card(MlflowClient(), model_name, version)
    except MlflowException as error:
        which = f" version {model_version}" if model_version else f"@{alias or 'champion'}"
        fail(f"no model card for {model_name}{which}: {error.message}")
    click.echo(text, nl=False)


@click.command()
@click.option("--model-name", default=None, help="Registered model [default: the config's, else covid-xray].")
@click.option("--config", "config_path", default=None, help="Take the tracking URI and model name from this config.")
@click.option("--reason", default="rollback by hand", show_default=True, help="Recorded with the move.")
def rollback(model_name: str | None, config_path: str | None, reason: str) -> None:
    """Make the previous champion the champion again."""
    config, _ = store(config_path)
    model_name = model_name_of(config, model_name)
    client = MlflowClient()
    try:
        old, new = rollback_to_previous(client, model_name, reason=reason)
    except (ValueError, MlflowException, LeaseBusy, LeaseLost) as error:
        fail(str(error))
    click.echo(f"{model_name}: champion is now version {new} (was {old})")
    follow_aliases_or_fail(client, model_name)


def follow_aliases_or_fail(client: MlflowClient, name: str) -> None:
    """ZenML stages follow the aliases just moved; a failure here names the fix (the aliases already moved)."""
    try:
        changed = follow_aliases(client, name)
    except Exception as error:  # noqa: BLE001 - reported, not swallowed: MLflow is already right, ZenML is not
        fail(
            f"MLflow aliases moved, but ZenML stages could not follow ({type(error).__name__}: {error}); "
            f"rerun `covid-xray history --model-name {name} --sync` to retry"
        )
    if changed:
        click.echo("ZenML stages: " + ", ".join(f"version {v} {stage}" for v, stage in sorted(changed.items())))


@click.command()
@click.option("--model-name", default=None, help="Registered model [default: the config's, else covid-xray].")
@click.option("--config", "config_path", default=None, help="Take the tracking URI and model name from this config.")
@click.option("--sync", is_flag=True, help="Also set the ZenML stages from the MLflow aliases.")
def history(model_name: str | None, config_path: str | None, sync: bool) -> None:
    """The champion's lineage: every decision and alias move.

    Each with its time, reasons and evidence numbers; then the current aliases and ZenML stages."""
    config, _ = store(config_path)
    model_name = model_name_of(config, model_name)
    client = MlflowClient()
    try:
        events = history_of(client, model_name)
        aliases = {alias: by_alias(client, model_name, alias) for alias in (CHAMPION, PREVIOUS, CHALLENGER)}
        pending = pending_move(client, model_name)
    except MlflowException as error:
        fail(f"no history for model {model_name!r}: {error.message}")
    if not events:
        fail(f"model {model_name!r} has no recorded decisions yet")
    for event in events:
        click.echo(format_event(event))
    click.echo("now: " + ", ".join(f"{a} = version {v.version}" if v else f"{a} = none" for a, v in aliases.items()))
    if pending:
        click.echo(f"unfinished move (completed by the next promote/rollback): {json.dumps(pending)}")
    if sync:
        follow_aliases_or_fail(client, model_name)
    try:
        stages = zenml_stages(model_name)
    except Exception as error:  # noqa: BLE001 - shown: the MLflow lineage above stands without ZenML
        click.echo(f"zenml: stages unavailable ({type(error).__name__}: {error})")
        return
    click.echo(
        "zenml: "
        + (
            ", ".join(f"version {v} {s}" for v, s in sorted(stages.items(), key=lambda i: int(i[0])))
            or "no model version mirrors an MLflow version"
        )
    )


def format_event(event: dict) -> str:
    """One event as a header line, its reasons and its evidence numbers."""
    moved = f"version {event.get('from_version') or 'none'} -> version {event.get('to_version') or 'none'}"
    run = f", run {event['run_id']}" if event.get("run_id") else ""
    candidate = f", candidate version {event['candidate']}" if event.get("candidate") else ""
    lines = [f"{event['time']}  {event['action']:<9} {moved}  by {event['by']}{run}{candidate}"]
    lines += [f"    - {reason}" for reason in event.get("reasons", [])]
    evidence = dict(event.get("evidence") or {})
    comparison = evidence.pop("comparison", None)
    if evidence:
        lines.append(
            "    evidence: "
            + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(evidence.items()))
        )
    if comparison:
        lines.append("    comparison: " + ", ".join(f"{k}={v}" for k, v in comparison.items()))
    return "\n".join(lines)
