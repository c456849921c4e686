"""The promotion gate and MLflow registry aliases.

A candidate becomes `champion` only when it passes the thresholds of the config and is no worse
than the current champion on the same test images. The previous champion keeps the alias
`previous` (for rollback); a rejected candidate gets `challenger`. The decision and its reasons
are tags on the model version. Moving the `champion` alias is the last, single write, so a failure
before it leaves the old champion in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from .config import PromotionConfig
from .metrics import mcnemar_worse

CHAMPION, PREVIOUS, CHALLENGER = "champion", "previous", "challenger"


@dataclass
class Decision:
    promote: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        return ("promoted: " if self.promote else "not promoted: ") + "; ".join(self.reasons)


def decide(
    metrics: dict[str, float],
    config: PromotionConfig,
    candidate_correct: np.ndarray | None = None,
    champion_correct: np.ndarray | None = None,
    valid_data: bool = True,
) -> Decision:
    """Apply the thresholds, then the comparison with the champion (when there is one)."""
    reasons, passed = [], True
    if not valid_data:
        return Decision(False, ["data validation failed"])
    for name, minimum in (("accuracy", config.min_accuracy), ("sensitivity", config.min_sensitivity),
                          ("specificity", config.min_specificity)):  # fmt: skip
        value = metrics.get(f"{name}_ci_low" if config.use_lower_ci else name, float("nan"))
        label = f"{name}{' (lower 95% CI)' if config.use_lower_ci else ''}"
        if not value >= minimum:  # nan fails too
            passed = False
            reasons.append(f"{label} {value:.3f} < {minimum:.3f}")
        else:
            reasons.append(f"{label} {value:.3f} >= {minimum:.3f}")
    if config.min_loso_balanced_accuracy is not None:
        value = metrics.get("loso_balanced_accuracy", float("nan"))
        if not value >= config.min_loso_balanced_accuracy:
            passed = False
            reasons.append(f"leave-one-source-out balanced accuracy {value:.3f} < {config.min_loso_balanced_accuracy:.3f}")
        else:
            reasons.append(f"leave-one-source-out balanced accuracy {value:.3f} >= {config.min_loso_balanced_accuracy:.3f}")
    if champion_correct is None:
        reasons.append("no champion yet")
    elif len(champion_correct) == 0:
        passed = False
        reasons.append("no test image the champion did not train on: cannot compare")
    else:
        candidate_accuracy, champion_accuracy = float(candidate_correct.mean()), float(champion_correct.mean())
        b, c, p = mcnemar_worse(candidate_correct, champion_correct)
        if candidate_accuracy + config.max_accuracy_drop < champion_accuracy:
            passed = False
            reasons.append(f"accuracy {candidate_accuracy:.3f} below champion's {champion_accuracy:.3f} "
                           f"on {len(champion_correct)} test images")  # fmt: skip
        elif p < config.mcnemar_alpha:
            passed = False
            reasons.append(f"significantly worse than champion (McNemar b={b}, c={c}, p={p:.3g})")
        else:
            reasons.append(f"no worse than champion ({candidate_accuracy:.3f} vs {champion_accuracy:.3f} on "
                           f"{len(champion_correct)} test images, McNemar p={p:.3g})")  # fmt: skip
    return Decision(passed, reasons)


def current_champion(client: MlflowClient, name: str):
    """The model version with the `champion` alias, or None."""
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def apply_decision(client: MlflowClient, name: str, version: str, decision: Decision) -> None:
    """Record the decision on the version, then move the aliases (champion last)."""
    client.set_model_version_tag(name, version, "promotion_decision", "promoted" if decision.promote else "rejected")
    client.set_model_version_tag(name, version, "promotion_reasons", "; ".join(decision.reasons)[:5000])
    if not decision.promote:
        client.set_registered_model_alias(name, CHALLENGER, version)
        return
    old = current_champion(client, name)
    if old is not None and old.version != version:
        client.set_registered_model_alias(name, PREVIOUS, old.version)
    client.set_registered_model_alias(name, CHAMPION, version)


def rollback(client: MlflowClient, name: str) -> tuple[str, str]:
    """Make the `previous` version champion again; returns (old champion, new champion) versions."""
    try:
        previous = client.get_model_version_by_alias(name, PREVIOUS)
    except MlflowException:
        raise ValueError(f"model {name!r} has no '{PREVIOUS}' version to roll back to") from None
    champion = current_champion(client, name)
    if champion is not None:
        client.set_registered_model_alias(name, PREVIOUS, champion.version)
    else:
        client.delete_registered_model_alias(name, PREVIOUS)
    client.set_registered_model_alias(name, CHAMPION, previous.version)
    client.set_model_version_tag(name, previous.version, "promotion_decision", "rolled back to")
    return (champion.version if champion else "none"), previous.version


def candidate_correct_from_run(client: MlflowClient, run_id: str, keys: list[str], classes: list[str]) -> np.ndarray:
    """Per-image correctness of a run's logged test predictions, in the order of `keys`."""
    from .report import load_test_predictions

    frame = load_test_predictions(run_id).set_index("sha256").loc[keys]
    predicted = np.asarray(classes)[frame[[f"p_{c}" for c in classes]].to_numpy().argmax(axis=1)]
    return predicted == frame["label"].to_numpy()


def champion_correct_on(model_uri: str, paths: list[str], labels: np.ndarray, classes: list[str]) -> np.ndarray:
    """Correctness of the model at `model_uri` on the test image files `paths`, each through the champion's own
    recorded transform and operating point (not the candidate's cached pixels)."""
    from .predict import Predictor

    answers = Predictor.from_uri(model_uri).predict_files(paths)
    bad = [f"{path}: {answer}" for path, answer in zip(paths, answers) if isinstance(answer, ValueError)]
    if bad:
        raise ValueError(f"the champion cannot score {len(bad)} test image(s): {'; '.join(bad[:5])}")
    return np.asarray([answer.label for answer in answers]) == np.asarray(classes)[labels]


def training_keys(client: MlflowClient, version) -> set[str]:
    """Content keys of the images the model version was trained or validated on (from its pipeline run's manifest)."""
    import io

    import pandas as pd

    run_id = (version.tags or {}).get("run_id") or version.run_id
    parent = client.get_run(run_id).data.tags.get("mlflow.parentRunId") if run_id else None
    if not parent:
        return set()
    try:
        text = mlflow.artifacts.load_text(f"runs:/{parent}/data/manifest.csv")
    except (MlflowException, OSError):
        return set()
    frame = pd.read_csv(io.StringIO(text), dtype={"sha256": str})
    return set(frame.loc[frame["split"] != "test", "sha256"])


def best_run(client: MlflowClient, run_ids: list[str]) -> str:
    """The run with the best validation balanced accuracy (then ROC AUC): chosen on validation, not test data."""

    def score(run_id: str) -> tuple[float, float]:
        metrics = client.get_run(run_id).data.metrics
        return metrics.get("val_balanced_accuracy", -1.0), metrics.get("val_roc_auc", -1.0)

    return max(run_ids, key=score)


def promote_run(
    client: MlflowClient, run_id: str, paths: list[str], labels: np.ndarray, keys: list[str], classes: list[str],
    config: PromotionConfig, valid_data: bool = True, force_reason: str | None = None,
) -> tuple[str, Decision]:
    """Register the run's model, gate it against thresholds and the champion, move aliases. Returns (version, decision)."""
    run = client.get_run(run_id)
    metrics = {k.removeprefix("test_"): v for k, v in run.data.metrics.items() if k.startswith("test_")}
    parent = run.data.tags.get("mlflow.parentRunId")
    loso = client.get_run(parent).data.metrics.get(f"loso_mean_balanced_accuracy.{run.data.tags.get('model.variant')}") if parent else None
    if loso is not None:
        metrics["loso_balanced_accuracy"] = loso
    candidate = candidate_correct_from_run(client, run_id, keys, classes)
    champion = current_champion(client, config.model_name)
    champion_correct = None
    if champion is not None:
        # Compare only on test images the champion never saw: after a data or split change, some of today's
        # test images may have been in its training split, which would flatter it.
        unseen = ~np.isin(keys, list(training_keys(client, champion)))
        champion_correct = champion_correct_on(f"models:/{config.model_name}/{champion.version}",
                                               list(np.asarray(paths)[unseen]), labels[unseen], classes)  # fmt: skip
        candidate = candidate[unseen]
    decision = decide(metrics, config, candidate, champion_correct, valid_data)
    if force_reason and not decision.promote:
        decision = Decision(True, [*decision.reasons, f"forced: {force_reason}"])
    existing = [v for v in client.search_model_versions(f"name = '{config.model_name}'") if v.tags.get("run_id") == run_id]
    version = existing[0] if existing else mlflow.register_model(
        run.data.tags["model_uri"], config.model_name,
        tags={"run_id": run_id, "data.manifest_hash": run.data.tags.get("data.manifest_hash", "")},
    )  # fmt: skip
    apply_decision(client, config.model_name, version.version, decision)
    client.set_tag(run_id, "promotion", decision.summary[:5000])
    return version.version, decision
