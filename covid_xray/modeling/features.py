"""Everything that pulls features out of a model: the pooled VGG16 backbone features (cached on disk per image, so a
frozen backbone runs once per image), a model's penultimate features (the shortcut check) and the features
out-of-distribution detection measures.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from ..config import ModelConfig
from ..data.stream import Split, model_input
from .loader import OrderedBatches, pixel_batches
from .models import ensemble_members, weights_fingerprint


def feature_extractor(model: keras.Model) -> keras.Model:
    """The part of a VGG16 model before its head: image → pooled backbone features (a seed ensemble's first member's:
    every member has the same frozen backbone)."""
    first = ensemble_members(model)[0]
    return keras.Model(first.inputs, first.get_layer("pool").output, name="features")


def is_vgg(model: keras.Model) -> bool:
    """Whether `model` (or a seed ensemble's members) is a VGG16 transfer model (its backbone is the layer `vgg16`)."""
    return "vgg16" in [layer.name for layer in ensemble_members(model)[0].layers]


def _with_outputs(model: keras.Model, features: Callable[[keras.Model], list]) -> keras.Model:
    """`model` with more outputs: `features` of it, or of a seed ensemble's first member (the features a model is
    described by: every member is trained alike, and the first stands for them)."""
    first = ensemble_members(model)[0]
    if first is model:
        return keras.Model(model.inputs, [model.outputs[0], *features(model)])
    tapped = keras.Model(first.inputs, features(first))
    extra = tapped(model.inputs[0])
    return keras.Model(model.inputs, [model.outputs[0], *(extra if isinstance(extra, list) else [extra])])


def _penultimate(model: keras.Model) -> list:
    return [model.get_layer("pool").output if is_vgg(model) else model.layers[-2].output]


def with_features(model: keras.Model) -> keras.Model:
    """`model` with a second output, its penultimate features: the pooled backbone features for VGG16, the input of
    the last Dense layer for a sequential CNN (what the shortcut check and out-of-distribution detection use)."""
    return _with_outputs(model, _penultimate)


Images = np.ndarray | OrderedBatches  # (n, size, size) pixels, or a split's model input batches (`pixel_batches`)


def predict_both(both: keras.Model, images: Images, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """The two outputs of a two-output model over `images`: (n, size, size) pixels, or a split's model input batches
    streamed from the image cache (`loader.pixel_batches`)."""
    if len(images) == 0:
        return np.zeros((0, both.outputs[0].shape[-1]), "float32"), np.zeros((0, both.outputs[1].shape[-1]), "float32")
    if isinstance(images, OrderedBatches):
        first, second = both.predict(images, verbose=0)
    else:
        first, second = both.predict(model_input(images), batch_size=batch_size, verbose=0)
    return first, second


def predict_with_features(model: keras.Model, images: Images, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(class probabilities, penultimate features) in one pass (see `with_features`, `predict_both`)."""
    return predict_both(with_features(model), images, batch_size)


def _conv_means(model: keras.Model) -> list:
    return [keras.ops.concatenate([keras.ops.mean(layer.output, axis=(1, 2)) for layer in _convs(model)], axis=-1)]


def _convs(model: keras.Model) -> list:
    return [layer for layer in ensemble_members(model)[0].layers if isinstance(layer, keras.layers.Conv2D)]


def feature_model(model):
    """`model` with a second output, the features out-of-distribution detection measures: for VGG16 the pooled
    backbone features (`explain.with_features`), for a CNN the global average of each conv block's output,
    concatenated (low-level texture and contrast as well as shapes), for a model without conv layers its
    penultimate layer."""
    if is_vgg(model) or not _convs(model):
        return with_features(model)
    return _with_outputs(model, _conv_means)


def predict_for_evaluation(model: keras.Model, batches: OrderedBatches) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(class probabilities, penultimate features, out-of-distribution features) of `batches` in one pass. For VGG16
    both features are the pooled backbone features (`with_features`); for a CNN see `feature_model`."""
    if is_vgg(model) or not _convs(model):
        proba, penultimate = predict_both(with_features(model), batches)
        return proba, penultimate, penultimate
    three = _with_outputs(model, lambda member: _penultimate(member) + _conv_means(member))
    if len(batches) == 0:
        widths = [int(output.shape[-1]) for output in three.outputs]
        return tuple(np.zeros((0, width), "float32") for width in widths)  # type: ignore[return-value]
    proba, penultimate, features = three.predict(batches, verbose=0)
    return proba, penultimate, features


def predict_with_ood_features(model, images, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(class probabilities, out-of-distribution features) of `images` in one pass: (n, size, size) uint8 pixels, or
    a dataset of model input batches (a split streamed from the image cache, `stream.pixel_batches`)."""
    return predict_both(feature_model(model), images, batch_size)


def ood_features(model, images, penultimate: np.ndarray | None = None) -> np.ndarray:
    """The out-of-distribution features of `images`; `penultimate` (`explain.predict_with_features`' features of the
    same images) is returned as is where they are the same (VGG16: no second pass through the backbone)."""
    if penultimate is not None and is_vgg(model):  # feature_model is with_features there: the same pooled vectors
        return penultimate
    return predict_with_ood_features(model, images)[1]


def split_features(model, model_config, split, image_cache_key: str, image_size: int, cache_dir: str) -> np.ndarray:
    """The out-of-distribution features of `split`'s images. A VGG16 whose backbone stayed frozen reads the backbone
    features training cached (`training.FeatureCache`: the same vectors); other models run once over the images."""
    fine_tuned = model_config.kind == "vgg16" and model_config.fine_tune_blocks and model_config.fine_tune_epochs
    if model_config.kind == "vgg16" and not fine_tuned and model_config.precision == "float32":
        cache = FeatureCache(cache_dir, feature_cache_key(model_config, image_cache_key, image_size))
        return cache.features(feature_extractor(model), split, model_config.batch_size)
    return predict_with_ood_features(model, pixel_batches(split))[1]


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
            computed = extractor.predict(
                pixel_batches(split.subset(missing), batch_size), verbose=1 if len(missing) > batch_size else 0
            )
            for i, vector in zip(missing, computed, strict=True):
                np.save(files[i], vector.astype("float32"))
        return np.stack([np.load(file) for file in files]) if files else np.zeros((0, 0), "float32")


def feature_cache_key(config: ModelConfig, image_cache_key: str, image_size: int) -> str:
    return f"vgg16-{weights_fingerprint(config.weights)}-{image_cache_key}-{image_size}"
