"""Leave-one-source-out: train on every source but one, test on the one held out.

Internal test splits share hospitals, scanners and preprocessing with training; a held-out source does not.
This is the number that tells whether a model generalises or has learned the source.
"""

from __future__ import annotations

import contextlib
import logging

import mlflow
import numpy as np
import pandas as pd

from ..config import ModelConfig, RunConfig
from ..data.dataset import image_cache, split_of
from ..data.rebalance import class_weights, rebalance
from ..data.split import hold_out_groups
from ..labels import POSITIVE
from ..modeling.training import EpochMetrics, train_model
from .evaluate import evaluate
from .report import DESCRIPTION

log = logging.getLogger(__name__)

SUMMARY_COLUMNS = [
    "held_out",
    "n",
    "n_covid",
    "sensitivity",
    "specificity",
    "balanced_accuracy",
    "roc_auc",
    "both_labels",
]
# Patient-group bootstrap intervals of the held-out source's numbers.
INTERVAL_COLUMNS = [
    f"{m}_ci_{end}" for m in ("sensitivity", "specificity", "balanced_accuracy", "roc_auc") for end in ("low", "high")
]


def loso_folds(manifest: pd.DataFrame, min_images: int = 10) -> list[str]:
    """Sources that can be held out: at least `min_images` images, and other sources left to train on."""
    counts = manifest["source"].value_counts()
    return sorted(s for s, n in counts.items() if n >= min_images and len(counts) > 1)


def fold_models(config: RunConfig) -> list[ModelConfig]:
    """The variants the pipeline's leave-one-source-out step trains: `evaluation.loso_models` (default all), each
    with at most `evaluation.loso_epochs` epochs per phase (cheaper folds, the same settings otherwise)."""
    evaluation = config.evaluation
    models = [m for m in config.models if evaluation.loso_models is None or m.name in evaluation.loso_models]
    if evaluation.loso_epochs is None:
        return models
    cap = evaluation.loso_epochs
    return [
        m.model_copy(update={"epochs": min(m.epochs, cap), "fine_tune_epochs": min(m.fine_tune_epochs, cap)})
        for m in models
    ]


def fold_rows(manifest: pd.DataFrame, held_out: str) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """The held-out source's rows, the rows a fold may train on, and how many other-source rows were left out.

    A patient group with an image in the held-out source (a patient followed across sources, or a picture copied
    from it) is left out of training entirely: its other-source images would be the held-out patients seen in training.
    """
    held = manifest["source"] == held_out
    shared = manifest["group_id"].isin(manifest.loc[held, "group_id"])
    return manifest[held], manifest[~held & ~shared], int((~held & shared).sum())


def run_fold(manifest: pd.DataFrame, held_out: str, model: ModelConfig, config: RunConfig, callbacks=None) -> dict:
    """Train `model` on all sources but `held_out` (patient split into train/val), score it on `held_out`."""
    test_rows, rest, excluded = fold_rows(manifest, held_out)
    if excluded:
        log.info(
            "fold without %s: %d training images left out, their patient groups have images in %s",
            held_out,
            excluded,
            held_out,
        )
    val_mask = hold_out_groups(rest, config.split.val_fraction, config.split.seed)
    train_rows = rebalance(rest[~val_mask], config.rebalance)
    train, val, test = (split_of(rows, config) for rows in (train_rows, rest[val_mask], test_rows))
    classes = config.classes
    result = train_model(
        model,
        train,
        val,
        n_classes=len(classes),
        image_size=config.data.image_size,
        image_cache_key=image_cache(config).key,
        cache_dir=config.data.cache_dir,
        class_weight=class_weights(train.labels, len(classes), config.rebalance.strategy),
        callbacks=callbacks,
        verbose=0,
    )
    # The fold's operating point and out-of-distribution threshold come from the fold's own validation rows, never
    # from the held-out source; its flag rate says how often an unseen hospital is flagged.
    scored = evaluate(result.model, model, train, val, test, config, context=f"fold without {held_out}")
    metrics, point = scored.test, scored.operating_point
    covid = test_rows["label"] == POSITIVE
    both = bool(covid.any() and (~covid).any())  # covid against the rest needs both sides
    return {
        "held_out": held_out,
        **{k: metrics[k] for k in SUMMARY_COLUMNS[1:-1]},
        "both_labels": both,
        **{k: metrics[k] for k in INTERVAL_COLUMNS},
        "ood_flag_rate": metrics["ood_flag_rate"],
        "ood_val_flag_rate": scored.ood.val_flag_rate,
        "ood_threshold": scored.ood.threshold,
        "threshold": point.threshold,
        "threshold_rule": point.rule,
        "train_images": len(train),
        "train_excluded_shared_group": excluded,
        "train_seconds": result.seconds,
    }


def summarise(folds: list[dict]) -> tuple[pd.DataFrame, float]:
    """The per-source table and the mean balanced accuracy over held-out sources that have both labels."""
    table = pd.DataFrame(folds)
    both = table[table["both_labels"]]
    mean = float(np.nanmean(both["balanced_accuracy"])) if len(both) else float("nan")
    return table, mean


def fold_description(fold: dict, variant: str) -> str:
    """What a fold run is and how it went, for the MLflow UI's description."""
    scored = (
        f"balanced accuracy {fold['balanced_accuracy']:.3f}"
        if fold["both_labels"]
        else f"sensitivity {fold['sensitivity']:.3f} (one class only: outside the mean)"
    )
    return (
        f"Leave-one-source-out fold: {variant} trained on {fold['train_images']} images without source "
        f"**{fold['held_out']}**, scored on its {fold['n']} images at threshold {fold['threshold']:.3f} "
        f"({fold['threshold_rule']}, chosen on the fold's own validation rows): {scored}; "
        f"{fold['ood_flag_rate']:.0%} flagged out of distribution."
    )


def run_loso(config: RunConfig, models: list[ModelConfig], manifest: pd.DataFrame, parent_name: str | None) -> dict:
    """Every fold of every model as an MLflow run nested under one parent; returns {model: (table, mean)}.

    With `parent_name` a new parent run is started; with None the folds nest under the active run (a pipeline's).
    """
    results = {}
    parent = mlflow.start_run(run_name=parent_name) if parent_name else contextlib.nullcontext()
    with parent:
        mlflow.set_tag("loso", "folds nested here")
        for model in models:
            folds = []
            for source in loso_folds(manifest, config.evaluation.loso_min_images):
                with mlflow.start_run(run_name=f"fold: without {source} · {model.name}", nested=True):
                    mlflow.set_tags(
                        {"loso.held_out": source, "loso.fold": f"without {source}", "model.variant": model.name}
                    )
                    fold = run_fold(manifest, source, model, config, callbacks=[EpochMetrics()])
                    mlflow.set_tags(
                        {"loso.threshold_rule": fold["threshold_rule"], DESCRIPTION: fold_description(fold, model.name)}
                    )
                    mlflow.log_metrics(
                        {
                            k: float(v)
                            for k, v in fold.items()
                            if k not in ("held_out", "both_labels", "threshold_rule") and np.isfinite(v)
                        }
                    )
                    folds.append(fold)
            table, mean = summarise(folds)
            mlflow.log_text(table.to_csv(index=False), f"loso/{model.name}.csv")
            if np.isfinite(mean):
                mlflow.log_metric(f"loso_mean_balanced_accuracy.{model.name}", mean)
            if len(table):  # how often an unseen source's images are flagged out of distribution, averaged over sources
                mlflow.log_metric(f"loso_mean_ood_flag_rate.{model.name}", float(table["ood_flag_rate"].mean()))
            results[model.name] = (table, mean)
    return results
