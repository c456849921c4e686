"""Train one configured model variant on in-memory image arrays.

VGG16 with a frozen backbone trains its head on backbone features computed once per image and
cached on disk (keyed by image content, preprocessing and backbone weights); an optional phase 2
unfreezes the last blocks and fine-tunes on images. CNNs train on images through tf.data.
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

from .config import ModelConfig
from .models import build_model, feature_extractor, make_optimizer, unfreeze_last_blocks, weights_fingerprint


@dataclass
class Split:
    """Images (n, size, size) uint8, integer labels, and content keys (sha256) of one split."""

    images: np.ndarray
    labels: np.ndarray
    keys: list[str]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class TrainResult:
    model: keras.Model
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    feature_cache_hits: int = 0
    feature_cache_misses: int = 0


def augmenter(seed: int = 0) -> keras.Sequential:
    """Radiograph-safe augmentation: small rotation, shift, zoom, contrast, brightness. No flips."""
    return keras.Sequential(
        [
            keras.layers.RandomRotation(0.03, seed=seed),
            keras.layers.RandomTranslation(0.05, 0.05, seed=seed),
            keras.layers.RandomZoom(0.1, seed=seed),
            keras.layers.RandomContrast(0.2, seed=seed),
            keras.layers.RandomBrightness(0.1, value_range=(0, 255), seed=seed),
        ],
        name="augment",
    )


def image_dataset(split: Split, batch_size: int, shuffle: bool, augment: bool, seed: int = 0) -> tf.data.Dataset:
    images = split.images[..., None].astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((images, split.labels.astype("int32")))
    if shuffle:
        dataset = dataset.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if augment:
        layers = augmenter(seed)
        dataset = dataset.map(lambda x, y: (layers(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


class FeatureCache:
    """Pooled backbone features per image, stored as one .npy per (image, preprocessing, weights)."""

    def __init__(self, root: str | Path, key: str):
        self.folder = Path(root) / "features" / key
        self.hits = 0
        self.misses = 0

    def features(self, extractor: keras.Model, split: Split, batch_size: int = 32) -> np.ndarray:
        files = [self.folder / f"{key}.npy" for key in split.keys]
        missing = [i for i, file in enumerate(files) if not file.is_file()]
        self.hits += len(files) - len(missing)
        self.misses += len(missing)
        if missing:
            self.folder.mkdir(parents=True, exist_ok=True)
            # Keras' progress bar: on a CPU this is the slow part of a first run (cached afterwards).
            computed = extractor.predict(split.images[missing][..., None].astype("float32"),
                                         batch_size=batch_size, verbose=1 if len(missing) > batch_size else 0)  # fmt: skip
            for i, vector in zip(missing, computed):
                np.save(files[i], vector.astype("float32"))
        return np.stack([np.load(file) for file in files]) if files else np.zeros((0, 0), "float32")


def feature_cache_key(config: ModelConfig, image_cache_key: str, image_size: int) -> str:
    return f"vgg16-{weights_fingerprint(config.weights)}-{image_cache_key}-{image_size}"


def _checkpoint_dir(cache_dir: str, config: ModelConfig, train: Split, phase: str) -> Path:
    identity = json.dumps([config.model_dump(), sorted(train.keys), phase], sort_keys=True, default=str)
    return Path(cache_dir) / "checkpoints" / f"{config.name}-{phase}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"


def _callbacks(config: ModelConfig, backup: Path, extra: list) -> list:
    callbacks = [keras.callbacks.BackupAndRestore(str(backup))]
    if config.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(patience=config.early_stopping_patience,
                                                       restore_best_weights=True))  # fmt: skip
    return callbacks + list(extra)


def _merge(history: dict, new: keras.callbacks.History, prefix: str = "") -> None:
    for name, values in new.history.items():
        history.setdefault(prefix + name, []).extend(float(v) for v in values)


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
    model = build_model(config, image_size, n_classes)
    result = TrainResult(model)
    extra = callbacks or []

    if config.kind == "vgg16" and use_feature_cache and not config.augment:
        cache = FeatureCache(cache_dir, feature_cache_key(config, image_cache_key, image_size))
        extractor = feature_extractor(model)
        train_features = cache.features(extractor, train, config.batch_size)
        val_features = cache.features(extractor, val, config.batch_size)
        result.feature_cache_hits, result.feature_cache_misses = cache.hits, cache.misses
        head = model.get_layer("head")  # shared with `model`: training it trains the full model's head
        head.compile(make_optimizer(config.optimizer, config.learning_rate), "sparse_categorical_crossentropy",
                     metrics=["accuracy"])  # fmt: skip
        history = head.fit(train_features, train.labels, validation_data=(val_features, val.labels),
                           epochs=config.epochs, batch_size=config.batch_size, class_weight=class_weight,
                           callbacks=_callbacks(config, _checkpoint_dir(cache_dir, config, train, "head"), extra),
                           verbose=verbose)  # fmt: skip
    else:
        model.compile(make_optimizer(config.optimizer, config.learning_rate), "sparse_categorical_crossentropy",
                      metrics=["accuracy"])  # fmt: skip
        history = model.fit(image_dataset(train, config.batch_size, True, config.augment),
                            validation_data=image_dataset(val, config.batch_size, False, False),
                            epochs=config.epochs, class_weight=class_weight,
                            callbacks=_callbacks(config, _checkpoint_dir(cache_dir, config, train, "full"), extra),
                            verbose=verbose)  # fmt: skip
    _merge(result.history, history)

    if config.kind == "vgg16" and config.fine_tune_blocks and config.fine_tune_epochs:
        unfreeze_last_blocks(model, config.fine_tune_blocks)
        model.compile(make_optimizer(config.optimizer, config.fine_tune_learning_rate),
                      "sparse_categorical_crossentropy", metrics=["accuracy"])  # fmt: skip
        done = len(history.epoch)
        fine = model.fit(image_dataset(train, config.batch_size, True, config.augment),
                         validation_data=image_dataset(val, config.batch_size, False, False),
                         initial_epoch=done, epochs=done + config.fine_tune_epochs, class_weight=class_weight,
                         callbacks=_callbacks(config, _checkpoint_dir(cache_dir, config, train, "fine"), extra),
                         verbose=verbose)  # fmt: skip
        _merge(result.history, fine, "fine_tune_")
    result.seconds = time.perf_counter() - started
    return result

