"""Train one configured model variant on a split's pixels, streamed from the image cache.

VGG16 with a frozen backbone trains its head on backbone features computed once per image and
cached on disk (keyed by image content, preprocessing and backbone weights); an optional phase 2
unfreezes the last blocks and fine-tunes on images. CNNs train on images streamed from the cache by a PyDataset
(covid_xray.modeling.loader), augmented inside the model while it trains (covid_xray.modeling.augmentation). Any Keras
backend: what depends on it is in covid_xray.modeling.backend.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import mlflow
import numpy as np
from mlflow.keras import MlflowCallback

from ..config import ModelConfig
from ..data.stream import Split
from . import backend
from .adversarial import PROBABILITIES, SOURCE, source_index, with_source_head
from .augmentation import augmenter
from .features import FeatureCache, feature_cache_key, feature_extractor
from .loader import TrainingBatches, labelled_batches
from .models import build_ensemble, build_model, make_optimizer, unfreeze_last_blocks


@dataclass
class TrainResult:
    model: keras.Model
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    feature_cache_hits: int = 0
    feature_cache_misses: int = 0


def with_augmentation(model: keras.Model, config: ModelConfig) -> keras.Model:
    """What `fit` trains on images: `model` behind the configured augmentation layers (they share its variables, and
    act only while training), or `model` itself without augmentation."""
    layers = augmenter(config.augment, config.seed)
    if layers is None:
        return model
    inputs = keras.Input(model.input_shape[1:])
    return keras.Model(inputs, model(layers(inputs)), name=f"{model.name}_training")


@dataclass
class SourceTargets:
    """What a source-adversarial model trains its source head on: each row's training source, as an index."""

    n_sources: int
    train: np.ndarray
    val: np.ndarray

    @classmethod
    def of(cls, config: ModelConfig, train: Split, val: Split) -> SourceTargets | None:
        if config.adversarial is None:
            return None
        if train.sources is None or val.sources is None:
            raise ValueError("adversarial training needs the rows' sources")
        n_sources = len(set(np.asarray(train.sources).tolist()))
        return cls(n_sources, source_index(train.sources, train.sources), source_index(train.sources, val.sources))


def trainable(model: keras.Model, config: ModelConfig, sources: SourceTargets | None, steps: int) -> keras.Model:
    """The model `fit` trains: `model`, or with a source head behind gradient reversal (`adversarial`)."""
    if sources is None or config.adversarial is None:
        return model
    return with_source_head(model, sources.n_sources, config.adversarial, steps)


def _checkpoint_dir(cache_dir: str, config: ModelConfig, train: Split, phase: str) -> Path:
    identity = json.dumps([config.model_dump(), sorted(train.keys), phase], sort_keys=True, default=str)
    return (
        Path(cache_dir) / "checkpoints" / f"{config.name}-{phase}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"
    )


def _callbacks(config: ModelConfig, backup: Path, extra: list) -> list:
    callbacks = [keras.callbacks.BackupAndRestore(str(backup))]
    if config.early_stopping_patience:
        # An adversarial model stops on its classifier's validation loss: the source loss is meant to stay high.
        monitor = f"val_{PROBABILITIES}_loss" if config.adversarial else "val_loss"
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=monitor, mode="min", patience=config.early_stopping_patience, restore_best_weights=True
            )
        )
    return callbacks + list(extra)


def _merge(history: dict, new: dict[str, list], prefix: str = "") -> None:
    """Append `new`'s per-epoch values (a Keras History's `.history`, or a member's) to `history`, names prefixed."""
    for name, values in new.items():
        history.setdefault(prefix + name, []).extend(float(v) for v in values)


class EpochMetrics(MlflowCallback):
    """MLflow's Keras callback (optimizer params, model summary), with Keras's per-epoch numbers (loss,
    argmax_accuracy and their val_ twins) under `epoch/`, rounded to 5 decimals: MLflow's UI groups metrics by the
    prefix before `/`, so the curves sit in their own section and the evaluate step's test_ and val_ metrics at the
    operating point come first. The end-of-validation copies (`validation_*`, no step) are not logged: the epoch's
    val_ numbers are the same."""

    prefix = ""  # a seed ensemble's member i logs under epoch/m<i>_

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs:
            mlflow.log_metrics({f"epoch/{self.prefix}{k}": round(float(v), 5) for k, v in logs.items()}, step=epoch)

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self.prefix in ("", "m0_"):  # a seed ensemble's members share their parameters: the first logs them
            super().on_train_begin(logs)

    def for_member(self, index: int) -> EpochMetrics:
        member = EpochMetrics()
        member.prefix = f"m{index}_"
        return member

    def on_test_end(self, logs: dict | None = None) -> None:
        pass


def argmax_accuracy() -> keras.metrics.Metric:
    # Not "accuracy": Keras would log `val_accuracy` per epoch (the argmax class), and MLflow's latest value of a key
    # is the one with the highest step, so it would hide the evaluate step's `val_accuracy` at the operating point.
    return keras.metrics.SparseCategoricalAccuracy(name="argmax_accuracy")


def _compile(model: keras.Model, config: ModelConfig, learning_rate: float) -> None:
    loss = "sparse_categorical_crossentropy"
    if config.adversarial is None:
        model.compile(make_optimizer(config.optimizer, learning_rate), loss, metrics=[argmax_accuracy()])
        return
    model.compile(
        make_optimizer(config.optimizer, learning_rate, config.adversarial.clipnorm),
        {PROBABILITIES: loss, SOURCE: loss},
        metrics={PROBABILITIES: [argmax_accuracy()], SOURCE: [keras.metrics.SparseCategoricalAccuracy("accuracy")]},
    )


def _fit_images(model, config, learning_rate, train, val, cache_dir, stage, class_weight, extra, verbose, **epochs):
    """`fit` on the split's images (augmented per config) at `learning_rate`, checkpointed under `stage`."""
    sources = SourceTargets.of(config, train, val)
    batches = TrainingBatches(
        train, config.batch_size, config.sampling, config.seed, source_targets=sources.train if sources else None
    )
    trained = with_augmentation(trainable(model, config, sources, len(batches)), config)
    _compile(trained, config, learning_rate)
    return trained.fit(
        batches,
        validation_data=labelled_batches(val, config.batch_size, source_targets=sources.val if sources else None),
        class_weight=class_weight,
        shuffle=False,
        callbacks=[
            batches.follow_epochs(),
            *_callbacks(config, _checkpoint_dir(cache_dir, config, train, stage), extra),
        ],
        verbose=verbose,
        **epochs,
    )


def _fit(
    model, config, train, val, image_cache_key, image_size, cache_dir, class_weight, extra, use_feature_cache, verbose
) -> TrainResult:
    result = TrainResult(model)
    if config.kind == "vgg16" and use_feature_cache and config.augment == "none":
        cache = FeatureCache(cache_dir, feature_cache_key(config, image_cache_key, image_size))
        extractor = feature_extractor(model)
        train_features = cache.features(extractor, train, config.batch_size)
        val_features = cache.features(extractor, val, config.batch_size)
        result.feature_cache_hits, result.feature_cache_misses = cache.hits, cache.misses
        head = model.get_layer("head")  # shared with `model`: training it trains the full model's head
        sources = SourceTargets.of(config, train, val)
        batches = TrainingBatches(
            train, config.batch_size, config.sampling, config.seed, train_features, sources.train if sources else None
        )
        trained = trainable(head, config, sources, len(batches))
        _compile(trained, config, config.learning_rate)
        history = trained.fit(
            batches,
            validation_data=labelled_batches(val, config.batch_size, val_features, sources.val if sources else None),
            epochs=config.epochs,
            class_weight=class_weight,
            shuffle=False,
            callbacks=[
                batches.follow_epochs(),
                *_callbacks(config, _checkpoint_dir(cache_dir, config, train, "head"), extra),
            ],
            verbose=verbose,
        )
    else:
        history = _fit_images(
            model,
            config,
            config.learning_rate,
            train,
            val,
            cache_dir,
            "full",
            class_weight,
            extra,
            verbose,
            epochs=config.epochs,
        )
    _merge(result.history, history.history)

    if config.kind == "vgg16" and config.fine_tune_blocks and config.fine_tune_epochs:
        unfreeze_last_blocks(model, config.fine_tune_blocks)
        done = len(history.epoch)
        fine = _fit_images(
            model,
            config,
            config.fine_tune_learning_rate,
            train,
            val,
            cache_dir,
            "fine",
            class_weight,
            extra,
            verbose,
            initial_epoch=done,
            epochs=done + config.fine_tune_epochs,
        )
        _merge(result.history, fine.history, "fine_tune_")
    return result


def train_model(
    config: ModelConfig,
    train: Split,
    val: Split,
    *,
    n_classes: int,
    image_size: int,
    image_cache_key: str,
    cache_dir: str,
    class_weight: dict[int, float] | None = None,
    callbacks: list | None = None,
    use_feature_cache: bool = True,
    verbose: int = 2,
) -> TrainResult:
    """Build and train `config`'s model; returns the trained model and its per-epoch history. A seed ensemble trains
    each member in turn (`ModelConfig.member_configs`) and returns them as one model (`models.build_ensemble`)."""

    def one(member: ModelConfig, member_callbacks: list | None) -> TrainResult:
        return _train_one(
            member,
            train,
            val,
            n_classes=n_classes,
            image_size=image_size,
            image_cache_key=image_cache_key,
            cache_dir=cache_dir,
            class_weight=class_weight,
            callbacks=member_callbacks,
            use_feature_cache=use_feature_cache,
            verbose=verbose,
        )

    if config.members == 1:
        return one(config, callbacks)
    started, result = time.perf_counter(), TrainResult(keras.Model())
    members = []
    for index, member in enumerate(config.member_configs()):
        trained = one(member, [c.for_member(index) if isinstance(c, EpochMetrics) else c for c in callbacks or []])
        members.append(trained.model)
        _merge(result.history, trained.history, f"m{index}_")
        result.feature_cache_hits += trained.feature_cache_hits
        result.feature_cache_misses += trained.feature_cache_misses
    result.model = build_ensemble(members, config.name)
    result.seconds = time.perf_counter() - started
    return result


def _train_one(
    config: ModelConfig,
    train: Split,
    val: Split,
    *,
    n_classes: int,
    image_size: int,
    image_cache_key: str,
    cache_dir: str,
    class_weight: dict[int, float] | None,
    callbacks: list | None,
    use_feature_cache: bool,
    verbose: int,
) -> TrainResult:
    started = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    train, val = train.with_findings(config.train_findings), val.with_findings(config.train_findings)
    if config.sampling == "source_label":
        class_weight = None  # the sampler already draws every (source, finding) cell evenly
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(config.precision)
    try:
        with backend.distribution():
            model = build_model(config, image_size, n_classes)
            result = _fit(
                model,
                config,
                train,
                val,
                image_cache_key,
                image_size,
                cache_dir,
                class_weight,
                callbacks or [],
                use_feature_cache,
                verbose,
            )
    finally:
        keras.config.set_dtype_policy(previous_policy)
    result.seconds = time.perf_counter() - started
    return result
