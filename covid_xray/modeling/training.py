"""Train one configured model variant on a split's pixels, streamed from the image cache.

VGG16 with a frozen backbone trains its head on backbone features computed once per image and
cached on disk (keyed by image content, preprocessing and backbone weights); an optional phase 2
unfreezes the last blocks and fine-tunes on images. CNNs train on images through tf.data
(see covid_xray.modeling.batches).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from ..config import ModelConfig
from ..data.stream import Split
from .batches import Rows, labelled_batches, with_rows
from .features import FeatureCache, feature_cache_key, feature_extractor
from .models import build_model, make_optimizer, unfreeze_last_blocks
from .sampling import augment_batch, balanced_dataset, cell_ids, steps_per_epoch


@dataclass
class TrainResult:
    model: keras.Model
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    feature_cache_hits: int = 0
    feature_cache_misses: int = 0


def training_inputs(
    split: Split, config: ModelConfig, augment: str = "none", seed: int = 0, x: Rows | None = None
) -> dict:
    """Keyword arguments for `fit` over the split: a tf.data pipeline that shuffles or draws source × label balanced
    batches of row indices, reads those rows (the split's pixels streamed from the image cache, or the rows of an
    in-memory `x` aligned with the split, such as backbone features), augments in parallel (training data only) and
    prefetches. (Pass fit `shuffle=False`: the dataset shuffles itself.)"""
    rows = np.arange(len(split))
    if config.sampling == "source_label":
        if split.sources is None:
            raise ValueError("sampling: source_label needs the training rows' sources")
        cells, _ = cell_ids(np.asarray(split.sources), split.labels)
        dataset = balanced_dataset(rows, split.labels, cells, config.batch_size, seed)
        steps = {"steps_per_epoch": steps_per_epoch(len(split), config.batch_size)}
    else:
        dataset = tf.data.Dataset.from_tensor_slices((rows, split.labels.astype("int32")))
        dataset = dataset.shuffle(len(split), seed=seed, reshuffle_each_iteration=True).batch(config.batch_size)
        steps = {}
    dataset = with_rows(dataset, split if x is None else x)
    augment_fn = augment_batch(augment, seed)
    if augment_fn is not None:
        dataset = dataset.map(augment_fn, num_parallel_calls=tf.data.AUTOTUNE)
    return {"x": dataset.prefetch(tf.data.AUTOTUNE), **steps}


def _checkpoint_dir(cache_dir: str, config: ModelConfig, train: Split, phase: str) -> Path:
    identity = json.dumps([config.model_dump(), sorted(train.keys), phase], sort_keys=True, default=str)
    return (
        Path(cache_dir) / "checkpoints" / f"{config.name}-{phase}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"
    )


def _callbacks(config: ModelConfig, backup: Path, extra: list) -> list:
    callbacks = [keras.callbacks.BackupAndRestore(str(backup))]
    if config.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(patience=config.early_stopping_patience, restore_best_weights=True)
        )
    return callbacks + list(extra)


ACCELERATOR = "GPU"  # the device type replicated over; tests set "CPU" with logical CPUs standing in for GPUs


def distribution_strategy() -> tf.distribute.Strategy:
    """MirroredStrategy over every visible GPU when there are several, else the default strategy: TensorFlow
    places the model on the one GPU when there is one, else on the CPU. No code or config change either way."""
    devices = [device.name for device in tf.config.list_logical_devices(ACCELERATOR)]
    return tf.distribute.MirroredStrategy(devices) if len(devices) > 1 else tf.distribute.get_strategy()


def _merge(history: dict, new: keras.callbacks.History, prefix: str = "") -> None:
    for name, values in new.history.items():
        history.setdefault(prefix + name, []).extend(float(v) for v in values)


def _compile(model: keras.Model, optimizer: str, learning_rate: float) -> None:
    # Not "accuracy": Keras would log `val_accuracy` per epoch (the argmax class), and MLflow's latest value of a key
    # is the one with the highest step, so it would hide the evaluate step's `val_accuracy` at the operating point.
    accuracy = keras.metrics.SparseCategoricalAccuracy(name="argmax_accuracy")
    model.compile(make_optimizer(optimizer, learning_rate), "sparse_categorical_crossentropy", metrics=[accuracy])


def _fit_images(model, config, train, val, cache_dir, stage, class_weight, extra, verbose, **epochs):
    """`model.fit` on the split's images (augmented per config), checkpointed under `stage`."""
    return model.fit(
        **training_inputs(train, config, config.augment),
        validation_data=labelled_batches(val, config.batch_size),
        class_weight=class_weight,
        shuffle=False,
        callbacks=_callbacks(config, _checkpoint_dir(cache_dir, config, train, stage), extra),
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
        _compile(head, config.optimizer, config.learning_rate)
        history = head.fit(
            **training_inputs(train, config, x=train_features),
            validation_data=labelled_batches(val, config.batch_size, x=val_features),
            epochs=config.epochs,
            class_weight=class_weight,
            shuffle=False,
            callbacks=_callbacks(config, _checkpoint_dir(cache_dir, config, train, "head"), extra),
            verbose=verbose,
        )
    else:
        _compile(model, config.optimizer, config.learning_rate)
        history = _fit_images(
            model, config, train, val, cache_dir, "full", class_weight, extra, verbose, epochs=config.epochs
        )
    _merge(result.history, history)

    if config.kind == "vgg16" and config.fine_tune_blocks and config.fine_tune_epochs:
        unfreeze_last_blocks(model, config.fine_tune_blocks)
        _compile(model, config.optimizer, config.fine_tune_learning_rate)
        done = len(history.epoch)
        fine = _fit_images(
            model,
            config,
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
        _merge(result.history, fine, "fine_tune_")
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
    """Build and train `config`'s model; returns the trained model and its per-epoch history."""
    started = time.perf_counter()
    keras.utils.set_random_seed(0)
    if config.sampling == "source_label":
        class_weight = None  # the sampler already draws every (source, label) cell, so every label, evenly
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(config.precision)
    try:
        with distribution_strategy().scope():
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
