"""The MLflow registry aliases: the one source of truth for which model serves.

A promoted candidate gets `champion`; the champion it replaced keeps `previous`, the rollback target; a rejected
candidate gets `challenger`. MLflow has no transactions, so every alias move runs under a lease and is journalled:

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
import json
import os
import random
import socket
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from ..config import PromotionConfig
from .gate import Decision

CHAMPION, PREVIOUS, CHALLENGER = "champion", "previous", "challenger"
PENDING = "promotion.pending"
EVENT_PREFIX = "promotion.event."


class LeaseBusy(TimeoutError):
    """Another process held the registry lease for longer than we were willing to wait."""


class LeaseLost(RuntimeError):
    """Our lease expired or was broken while we held it; we stopped before the next write."""


def actor() -> str:
    """Who moves an alias: user, host and process."""
    return f"{getpass.getuser()}@{socket.gethostname()} pid {os.getpid()}"


def current_champion(client: MlflowClient, name: str) -> ModelVersion | None:
    """The model version with the `champion` alias, or None when there is none (or no such model yet)."""
    return by_alias(client, name, CHAMPION)


def by_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The model version holding `alias`, or None when none does (or there is no such model yet)."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


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
            client.create_registered_model(
                lock,
                tags={"token": token, "holder": holder, "expires": f"{time.time() + seconds:.3f}"},
                description=f"promotion lease of {name!r}: held while aliases move",
            )
            break
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        _break_if_expired(client, lock)
        if time.monotonic() > give_up:
            raise LeaseBusy(f"registry lease {lock} still held after {wait:.0f} s: {_lease_holder(client, lock)}")
        time.sleep(random.uniform(0.05, 0.3))  # noqa: S311 - back-off jitter, not cryptography
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
    moment = datetime.now(UTC) if epoch is None else datetime.fromtimestamp(epoch, UTC)
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
    found = by_alias(client, name, PREVIOUS)
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
    elif by_alias(client, name, PREVIOUS) is not None:
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


def apply_decision(
    client: MlflowClient,
    name: str,
    version: str,
    decision: Decision,
    expected_champion: str | None,
    config: PromotionConfig,
    run_id: str | None = None,
    action: str = "promote",
) -> Decision:
    """Record the decision and move the aliases, compare-and-set against `expected_champion` under the lease."""
    with lease(client, name, config.lease_seconds, config.lease_wait_seconds) as held:
        _complete_pending(client, name, held)
        found = current_champion(client, name)
        now = str(found.version) if found else None
        if decision.promote and now != expected_champion and now != version:
            decision = Decision(
                False,
                [
                    *decision.reasons,
                    f"champion moved from {_v(expected_champion)} to {_v(now)} "
                    "while this candidate was gated: not promoted (compare-and-set); rerun the gate",
                ],
                decision.evidence,
            )
        event = {
            "action": action if decision.promote else "rejected",
            "run_id": run_id,
            "candidate": version,
            "from_version": now,
            "to_version": version if decision.promote else now,
            "reasons": decision.reasons,
            "evidence": decision.evidence,
        }
        held.check()
        client.set_model_version_tag(
            name, version, "promotion_decision", "promoted" if decision.promote else "rejected"
        )
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
    found = by_alias(client, name, PREVIOUS)
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
        event: dict[str, Any] = {
            "action": "rollback",
            "from_version": old,
            "to_version": target,
            "reasons": [reason or "rollback by hand"],
            "evidence": {},
        }
        _move(client, name, held, target, old, event)
        client.set_model_version_tag(name, target, "promotion_decision", "rolled back to")
    return (old or "none"), target
