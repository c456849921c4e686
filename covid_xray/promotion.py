"""The promotion gate and the MLflow registry aliases: the one source of truth for which model serves.

A candidate becomes `champion` when it passes the thresholds of the config and the paired non-inferiority test
against the current champion on the test images neither has trained on (covid_xray.comparison). A rejected
candidate gets `challenger`; the champion it replaced keeps `previous`, the rollback target.

MLflow has no transactions, so every alias move runs under a lease and is journalled:

1. Take the lease: create the registered model `<name>.lease` (the store refuses a second one with the same
   name, so exactly one process holds it), with a token and an expiry. A lease older than its expiry belongs
   to a crashed holder and may be broken.
2. Compare-and-set: re-read the champion. If it is no longer the one the candidate was compared with, the
   decision is stale: nothing moves, and the refusal is recorded.
3. Write the intended end state (`promotion.pending`: champion and previous after the move), then move
   `champion`, then `previous`, checking before each write that the lease is still ours, then record the move
   as one event tag and clear the journal.

`champion` moves first: a crash after it leaves the gated (or rolled-back-to) model serving. Until `previous`
is written the rollback target is the one in the journal (`rollback_target` reads it), and whoever takes the
lease next completes the journalled move first. So every state names a valid champion and rollback target.
"""

from __future__ import annotations

import getpass
import io
import json
import os
import random
import socket
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from .comparison import Comparison, compare
from .config import PromotionConfig
from .report import load_test_predictions

CHAMPION, PREVIOUS, CHALLENGER = "champion", "previous", "challenger"
PENDING = "promotion.pending"
EVENT_PREFIX = "promotion.event."
PREDICTION_COLUMNS = ("sha256", "path", "label", "group_id", "predicted")

Scorer = Callable[[str, list[str]], np.ndarray]


class PromotionError(RuntimeError):
    """The gate cannot decide (missing evidence); the message says what is missing and where."""


class LeaseBusy(TimeoutError):
    """Another process held the registry lease for longer than we were willing to wait."""


class LeaseLost(RuntimeError):
    """Our lease expired or was broken while we held it; we stopped before the next write."""


@dataclass
class Decision:
    promote: bool
    reasons: list[str] = field(default_factory=list)
    evidence: dict = field(default_factory=dict)

    @property
    def summary(self) -> str:
        return ("promoted: " if self.promote else "not promoted: ") + "; ".join(self.reasons)


def actor() -> str:
    """Who moves an alias: user, host and process."""
    return f"{getpass.getuser()}@{socket.gethostname()} pid {os.getpid()}"


def decide(
    metrics: dict[str, float], config: PromotionConfig, comparison: Comparison | None = None,
    data_problem: str | None = None,
) -> Decision:
    """Apply the thresholds, then the comparison with the champion (None: there is no champion yet).

    `data_problem` (see `data_validation_problem`) refuses before any number is looked at."""
    if data_problem:
        return Decision(False, [data_problem])
    reasons, passed, evidence = [], True, {}
    for name, minimum in (("accuracy", config.min_accuracy), ("sensitivity", config.min_sensitivity),
                          ("specificity", config.min_specificity)):  # fmt: skip
        value = metrics.get(f"{name}_ci_low" if config.use_lower_ci else name, float("nan"))
        label = f"{name}{' (lower 95% CI)' if config.use_lower_ci else ''}"
        evidence[f"test_{name}{'_ci_low' if config.use_lower_ci else ''}"] = value
        if not value >= minimum:  # nan fails too
            passed = False
            reasons.append(f"{label} {value:.3f} < {minimum:.3f}")
        else:
            reasons.append(f"{label} {value:.3f} >= {minimum:.3f}")
    if config.min_loso_balanced_accuracy is not None:
        value = metrics.get("loso_balanced_accuracy", float("nan"))
        evidence["loso_balanced_accuracy"] = value
        verb = ">=" if value >= config.min_loso_balanced_accuracy else "<"
        passed = passed and verb == ">="
        reasons.append(f"leave-one-source-out balanced accuracy {value:.3f} {verb} {config.min_loso_balanced_accuracy:.3f}")
    if comparison is None:
        reasons.append("no champion yet")
    else:
        passed = passed and comparison.promotes
        reasons.append(comparison.summary)
        evidence["comparison"] = comparison.to_record()
    return Decision(passed, reasons, evidence)


def current_champion(client: MlflowClient, name: str):
    """The model version with the `champion` alias, or None when there is none (or no such model yet)."""
    return _by_alias(client, name, CHAMPION)


def _by_alias(client: MlflowClient, name: str, alias: str):
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


# --- evidence -------------------------------------------------------------------------------------------------


def training_keys(client: MlflowClient, version) -> set[str]:
    """Content keys of the images the model version was trained or validated on (its pipeline run's manifest).

    Raises PromotionError with the reason when they cannot be read: an empty set would silently let the
    champion be scored on its own training images."""
    run_id = (version.tags or {}).get("run_id") or version.run_id
    where = f"version {version.version} of {version.name!r}"
    if not run_id:
        raise PromotionError(f"{where} has no run: its training images are unknown")
    parent = client.get_run(run_id).data.tags.get("mlflow.parentRunId")
    if not parent:
        raise PromotionError(f"{where}: run {run_id} has no pipeline (parent) run, so no data/manifest.csv")
    try:
        text = mlflow.artifacts.load_text(f"runs:/{parent}/data/manifest.csv")
    except (MlflowException, OSError) as error:
        raise PromotionError(f"{where}: cannot read data/manifest.csv of pipeline run {parent}: {error}") from None
    frame = pd.read_csv(io.StringIO(text), dtype={"sha256": str})
    missing = {"sha256", "split"} - set(frame.columns)
    if missing:
        raise PromotionError(f"{where}: data/manifest.csv of pipeline run {parent} lacks column(s) {sorted(missing)}")
    return set(frame.loc[frame["split"] != "test", "sha256"])


def candidate_predictions(run_id: str) -> pd.DataFrame:
    """The candidate's logged test predictions (evaluation/test_predictions.csv), checked for the needed columns."""
    try:
        return load_test_predictions(run_id, PREDICTION_COLUMNS)
    except LookupError as error:
        raise PromotionError(str(error)) from error


def data_validation_problem(run, pipeline_run) -> str | None:
    """Why the data a variant run was trained on cannot be trusted, or None when its pipeline run's validation passed.

    The validate step tags the pipeline (parent) run `validation`; a run without that record is not trusted either,
    so `covid-xray promote --run` cannot promote a model of data that failed (severity warn) or was never checked."""
    if pipeline_run is None:
        return f"run {run.info.run_id} has no pipeline run, so no data validation record"
    outcome, parent = pipeline_run.data.tags.get("validation"), pipeline_run.info.run_id
    if outcome == "passed":
        return None
    if outcome is None:
        return f"pipeline run {parent} has no data validation record"
    return f"data validation {outcome} on pipeline run {parent}"


def champion_predictions(model_uri: str, paths: list[str]) -> np.ndarray:
    """The champion's predicted class of each image file, with its own recorded transform and threshold."""
    from .predict import Predictor

    results = Predictor.from_uri(model_uri).predict_files(paths)
    failed = [f"{path}: {result}" for path, result in zip(paths, results) if isinstance(result, Exception)]
    if failed:
        raise PromotionError(f"champion {model_uri} could not score {len(failed)} test image(s): {'; '.join(failed[:5])}")
    return np.asarray([result.label for result in results])


def compare_with_champion(
    client: MlflowClient, frame: pd.DataFrame, champion, config: PromotionConfig, scorer: Scorer | None = None,
) -> tuple[Comparison, list[str]]:
    """The comparison on the candidate's test rows the champion has not trained on, and notes on what was used."""
    notes = []
    try:
        seen = training_keys(client, champion)
        unseen = frame[~frame["sha256"].isin(seen)]
        notes.append(f"{len(frame) - len(unseen)} of {len(frame)} test images left out: champion trained on them")
    except PromotionError as error:
        if config.unknown_champion_split != "compare_all":
            raise PromotionError(f"cannot compare with the champion: {error} (set promotion.unknown_champion_split: "
                                 "compare_all to compare on all test images)") from None  # fmt: skip
        unseen = frame
        notes.append(f"champion's training images unknown ({error}): compared on all {len(frame)} test images "
                     "(promotion.unknown_champion_split: compare_all)")  # fmt: skip
    settings = dict(metric=config.comparison_metric, margin=config.non_inferiority_margin, alpha=config.alpha,
                    resamples=config.bootstrap_resamples, min_images=config.min_compared_images,
                    min_patients=config.min_compared_patients)  # fmt: skip
    truth, groups, predicted = (unseen[c].to_numpy() for c in ("label", "group_id", "predicted"))
    patients = len(np.unique(groups))
    if len(unseen) < config.min_compared_images or patients < config.min_compared_patients:
        # Not worth re-scoring the champion: the test cannot have power on so few.
        found = Comparison.insufficient(config.comparison_metric, len(unseen), patients, config.non_inferiority_margin,
                                        config.alpha, config.min_compared_images, config.min_compared_patients)  # fmt: skip
        return found, notes
    champion_labels = (scorer or champion_predictions)(f"models:/{champion.name}/{champion.version}", list(unseen["path"]))
    return compare(truth, predicted, np.asarray(champion_labels), groups, **settings), notes


def select_candidate(
    client: MlflowClient, run_ids: list[str], config: PromotionConfig, parent_metrics: dict
) -> tuple[str, str]:
    """The variant run to gate, and why: chosen on validation or leave-one-source-out data, never on test data."""
    metric = config.comparison_metric

    runs = {run_id: client.get_run(run_id) for run_id in run_ids}
    variants = {run_id: run.data.tags.get("model.variant", run_id) for run_id, run in runs.items()}
    unscored = [variants[r] for r, run in runs.items() if not np.isfinite(run.data.metrics.get(f"val_{metric}", np.nan))]
    if unscored:
        raise PromotionError(f"no validation {metric} (val_{metric}) was recorded for {unscored}: "
                             "the candidate is chosen on validation data, so every variant needs it")  # fmt: skip

    def validation(run_id: str) -> tuple[float, float]:
        metrics = runs[run_id].data.metrics
        return metrics[f"val_{metric}"], metrics.get("val_roc_auc", -1.0)

    if config.selection == "validation":
        best = max(run_ids, key=validation)
        return best, f"{variants[best]}: best validation {metric} ({validation(best)[0]:.3f}) of {len(run_ids)} variants"
    loso = {run_id: parent_metrics.get(f"loso_mean_balanced_accuracy.{variants[run_id]}") for run_id in run_ids}
    missing = [variants[r] for r, value in loso.items() if value is None or not np.isfinite(value)]
    if missing:
        raise PromotionError(f"promotion.selection is loso but no leave-one-source-out mean was recorded for {missing} "
                             "(listed in evaluation.loso_models? a held-out source with both labels?)")  # fmt: skip
    top = max(loso.values())
    tied = [r for r in run_ids if loso[r] >= top - config.selection_tolerance]
    best = max(tied, key=validation)
    ranking = ", ".join(f"{variants[r]} {loso[r]:.3f}" for r in sorted(run_ids, key=lambda r: -loso[r]))
    tie = f"; tie within {config.selection_tolerance:.3f} broken by validation {metric}" if len(tied) > 1 else ""
    return best, f"{variants[best]}: best mean leave-one-source-out balanced accuracy ({ranking}){tie}"


# --- lease, journal, events -------------------------------------------------------------------------------------


@dataclass
class Lease:
    client: MlflowClient
    lock: str
    token: str
    deadline: float  # time.monotonic() after which we no longer trust that we hold it

    def check(self) -> None:
        """Raise LeaseLost unless the lease is still ours and unexpired: called before every write."""
        if time.monotonic() > self.deadline:
            raise LeaseLost(f"lease {self.lock} expired while held; stopped before the next write")
        try:
            tags = self.client.get_registered_model(self.lock).tags
        except MlflowException as error:
            raise LeaseLost(f"lease {self.lock} vanished while held ({error.error_code})") from None
        if tags.get("token") != self.token:
            raise LeaseLost(f"lease {self.lock} was taken over by {tags.get('holder', 'someone else')}")


@contextmanager
def lease(client: MlflowClient, name: str, seconds: float = 120.0, wait: float = 300.0, holder: str | None = None):
    """Hold the registry lease of model `name`: exactly one holder at a time (see the module docstring)."""
    lock, token, holder = f"{name}.lease", uuid.uuid4().hex, holder or actor()
    give_up = time.monotonic() + wait
    while True:
        started = time.monotonic()
        try:
            client.create_registered_model(lock, tags={"token": token, "holder": holder,
                                                       "expires": f"{time.time() + seconds:.3f}"},
                                           description=f"promotion lease of {name!r}: held while aliases move")  # fmt: skip
            break
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        _break_if_expired(client, lock)
        if time.monotonic() > give_up:
            raise LeaseBusy(f"registry lease {lock} still held after {wait:.0f} s: {_lease_holder(client, lock)}")
        time.sleep(random.uniform(0.05, 0.3))
    held = Lease(client, lock, token, started + seconds * 0.9)
    try:
        yield held
    finally:
        try:
            current = client.get_registered_model(lock).tags.get("token")
        except MlflowException:
            current = None
        if current == token:
            client.delete_registered_model(lock)


def _lease_holder(client: MlflowClient, lock: str) -> str:
    try:
        tags = client.get_registered_model(lock).tags
    except MlflowException:
        return "released meanwhile"
    return f"held by {tags.get('holder')} until {_iso(float(tags.get('expires', 0)))}"


def _break_if_expired(client: MlflowClient, lock: str) -> None:
    """Delete a lease whose holder let it expire (crashed); re-read just before deleting to spare a fresh one."""
    try:
        tags = client.get_registered_model(lock).tags
        if time.time() <= float(tags.get("expires", "inf")):
            return
        if client.get_registered_model(lock).tags.get("token") == tags.get("token"):
            client.delete_registered_model(lock)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise


def _iso(epoch: float | None = None) -> str:
    moment = datetime.now(timezone.utc) if epoch is None else datetime.fromtimestamp(epoch, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record_event(client: MlflowClient, name: str, event: dict) -> dict:
    """One registered-model tag per decision or move; keys sort by time."""
    event = {"time": _iso(), "by": actor(), **event}
    key = f"{EVENT_PREFIX}{time.time_ns():020d}.{uuid.uuid4().hex[:6]}"
    client.set_registered_model_tag(name, key, json.dumps(event, default=_plain, sort_keys=True))
    return event


def _plain(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.bool_):
        return bool(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def history(client: MlflowClient, name: str) -> list[dict]:
    """Every recorded decision and alias move of model `name`, oldest first."""
    tags = client.get_registered_model(name).tags
    return [json.loads(tags[key]) for key in sorted(k for k in tags if k.startswith(EVENT_PREFIX))]


def pending_move(client: MlflowClient, name: str) -> dict | None:
    """The journalled move that a crashed process did not finish, or None."""
    text = client.get_registered_model(name).tags.get(PENDING)
    return json.loads(text) if text else None


def rollback_target(client: MlflowClient, name: str) -> str | None:
    """The version a rollback would restore: the journalled one while a move is unfinished, else `previous`."""
    pending = pending_move(client, name)
    if pending is not None:
        return pending.get("previous")
    found = _by_alias(client, name, PREVIOUS)
    return str(found.version) if found else None


def _move(client: MlflowClient, name: str, held: Lease, champion: str, previous: str | None, event: dict) -> dict:
    """Journal the end state, move `champion`, then `previous`, record the event, clear the journal."""
    held.check()
    client.set_registered_model_tag(name, PENDING, json.dumps({"champion": champion, "previous": previous, **event}))
    return _finish(client, name, held, champion, previous, event)


def _finish(client: MlflowClient, name: str, held: Lease, champion: str, previous: str | None, event: dict) -> dict:
    held.check()
    client.set_registered_model_alias(name, CHAMPION, champion)
    held.check()
    if previous is not None:
        client.set_registered_model_alias(name, PREVIOUS, previous)
    elif _by_alias(client, name, PREVIOUS) is not None:
        client.delete_registered_model_alias(name, PREVIOUS)
    recorded = record_event(client, name, event)
    client.delete_registered_model_tag(name, PENDING)
    return recorded


def _complete_pending(client: MlflowClient, name: str, held: Lease) -> dict | None:
    """Finish a move a crashed holder journalled but did not complete (roll forward)."""
    pending = pending_move(client, name)
    if pending is None:
        return None
    champion, previous = pending.pop("champion"), pending.pop("previous")
    pending["reasons"] = [*pending.get("reasons", []), f"completed by {actor()} after the mover stopped mid-way"]
    return _finish(client, name, held, champion, previous, pending)


def finish_pending(client: MlflowClient, name: str, config: PromotionConfig | None = None) -> dict | None:
    """Take the lease and complete an unfinished journalled move (after a crash); returns its event, or None."""
    config = config or PromotionConfig(model_name=name)
    with lease(client, name, config.lease_seconds, config.lease_wait_seconds) as held:
        return _complete_pending(client, name, held)


# --- the two commands -------------------------------------------------------------------------------------------


def apply_decision(
    client: MlflowClient, name: str, version: str, decision: Decision, expected_champion: str | None,
    config: PromotionConfig, run_id: str | None = None, action: str = "promote",
) -> Decision:
    """Record the decision and move the aliases, compare-and-set against `expected_champion` under the lease."""
    with lease(client, name, config.lease_seconds, config.lease_wait_seconds) as held:
        _complete_pending(client, name, held)
        found = current_champion(client, name)
        now = str(found.version) if found else None
        if decision.promote and now != expected_champion and now != version:
            decision = Decision(False, [*decision.reasons, f"champion moved from {_v(expected_champion)} to {_v(now)} "
                                        "while this candidate was gated: not promoted (compare-and-set); rerun the gate"],
                                decision.evidence)  # fmt: skip
        event = {"action": action if decision.promote else "rejected", "run_id": run_id, "candidate": version,
                 "from_version": now, "to_version": version if decision.promote else now,
                 "reasons": decision.reasons, "evidence": decision.evidence}  # fmt: skip
        held.check()
        client.set_model_version_tag(name, version, "promotion_decision", "promoted" if decision.promote else "rejected")
        client.set_model_version_tag(name, version, "promotion_reasons", "; ".join(decision.reasons)[:5000])
        if not decision.promote:
            client.set_registered_model_alias(name, CHALLENGER, version)
            record_event(client, name, event)
        elif now != version:
            _move(client, name, held, version, now if now is not None else _previous_version(client, name), event)
        else:
            record_event(client, name, {**event, "action": "kept", "reasons": [*decision.reasons, "already champion"]})
    return decision


def _previous_version(client: MlflowClient, name: str) -> str | None:
    found = _by_alias(client, name, PREVIOUS)
    return str(found.version) if found else None


def _v(version: str | None) -> str:
    return f"version {version}" if version else "none"


def rollback(
    client: MlflowClient, name: str, config: PromotionConfig | None = None, reason: str | None = None
) -> tuple[str, str]:
    """Make the rollback target champion again (the old champion becomes `previous`); returns (old, new) versions."""
    config = config or PromotionConfig(model_name=name)
    with lease(client, name, config.lease_seconds, config.lease_wait_seconds) as held:
        _complete_pending(client, name, held)
        target = rollback_target(client, name)
        if target is None:
            raise ValueError(f"model {name!r} has no '{PREVIOUS}' version to roll back to")
        found = current_champion(client, name)
        old = str(found.version) if found else None
        event = {"action": "rollback", "from_version": old, "to_version": target,
                 "reasons": [reason or "rollback by hand"], "evidence": {}}  # fmt: skip
        _move(client, name, held, target, old, event)
        client.set_model_version_tag(name, target, "promotion_decision", "rolled back to")
    return (old or "none"), target


def promote_run(
    client: MlflowClient, run_id: str, config: PromotionConfig, force_reason: str | None = None,
    scorer: Scorer | None = None, selection: str | None = None,
) -> tuple[str, Decision]:
    """Register the run's model, gate it against the data validation record, the thresholds and the champion, move
    aliases. (version, decision)"""
    run = client.get_run(run_id)
    parent = run.data.tags.get("mlflow.parentRunId")
    pipeline_run = client.get_run(parent) if parent else None
    data_problem = data_validation_problem(run, pipeline_run)
    metrics = {k.removeprefix("test_"): v for k, v in run.data.metrics.items() if k.startswith("test_")}
    variant = run.data.tags.get("model.variant")
    loso = pipeline_run.data.metrics.get(f"loso_mean_balanced_accuracy.{variant}") if pipeline_run else None
    if loso is not None:
        metrics["loso_balanced_accuracy"] = loso
    champion = current_champion(client, config.model_name)
    comparison, notes = None, []
    if champion is not None and champion.run_id != run_id and not data_problem:
        comparison, notes = compare_with_champion(client, candidate_predictions(run_id), champion, config, scorer)
    decision = decide(metrics, config, comparison, data_problem)
    decision.reasons[:0] = [r for r in (selection,) if r] + notes
    if force_reason and not decision.promote:
        decision = Decision(True, [*decision.reasons, f"forced: {force_reason}"],
                            {**decision.evidence, "forced": force_reason})  # fmt: skip
    existing = [v for v in client.search_model_versions(f"name = '{config.model_name}'") if v.tags.get("run_id") == run_id]
    version = existing[0] if existing else mlflow.register_model(
        run.data.tags["model_uri"], config.model_name,
        tags={"run_id": run_id, "data.manifest_hash": run.data.tags.get("data.manifest_hash", "")},
    )  # fmt: skip
    decision = apply_decision(client, config.model_name, str(version.version), decision,
                              str(champion.version) if champion else None, config, run_id)  # fmt: skip
    client.set_tag(run_id, "promotion", decision.summary[:5000])
    return str(version.version), decision
