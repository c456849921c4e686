"""Where a model looks and what it can tell apart besides the disease.

Grad-CAM heatmaps show whether the covid score comes from the lungs or from labels, borders and markers.
The shortcut check trains a small classifier to predict an image's SOURCE from the model's own features:
well above chance, together with strong source × label confounding, means the model may have learned the
hospital instead of the disease.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from ..data.stream import model_input
from ..modeling import backend
from ..modeling.features import is_vgg
from ..modeling.models import ensemble_members
from .metrics import source_predictability


def split_at_last_conv(model: keras.Model) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """(images -> last conv feature map, feature map -> class probabilities) of a covid-xray VGG16 or sequential CNN."""
    if is_vgg(model):
        backbone = model.get_layer("vgg16")
        to_conv = keras.Model(backbone.inputs, backbone.get_layer("block5_conv3").output)
        rest = [backbone.get_layer("block5_pool"), model.get_layer("pool"), model.get_layer("head")]
        return (lambda images: to_conv(model.get_layer("vgg_preprocess")(images))), _chain(rest)
    last = max(i for i, layer in enumerate(model.layers) if isinstance(layer, keras.layers.Conv2D))
    return _chain(model.layers[: last + 1]), _chain(model.layers[last + 1 :])


def _chain(layers: list) -> Callable[[Any], Any]:
    def apply(x: Any) -> Any:
        for layer in layers:
            x = layer(x)
        return x

    return apply


def grad_cam(model: keras.Model, images: np.ndarray, class_index: int, batch_size: int = 32) -> np.ndarray:
    """Heatmaps (n, size, size) in [0, 1] for class `class_index`, upsampled to the input size, `batch_size` images at
    a time (a VGG16's first-block activations at 224 px are about 25 MB per image). The gradient of the class score
    with respect to the last conv feature map comes from the backend (`modeling.backend`)."""
    members = ensemble_members(model)
    if len(members) > 1:  # a seed ensemble: the mean of its members' maps, rescaled to a peak of 1
        return _peak_one(np.mean([grad_cam(member, images, class_index, batch_size) for member in members], axis=0))
    chunks = [_grad_cam(model, images[i : i + batch_size], class_index) for i in range(0, len(images), batch_size)]
    return np.concatenate(chunks) if chunks else np.zeros((0, *images.shape[1:3]), np.float32)


def _peak_one(cam: np.ndarray) -> np.ndarray:
    peak = cam.reshape(len(cam), -1).max(axis=1).reshape(-1, 1, 1) if len(cam) else np.zeros((0, 1, 1))
    return np.divide(cam, peak, out=np.zeros_like(cam), where=peak > 0)


def _grad_cam(model: keras.Model, images: np.ndarray, class_index: int) -> np.ndarray:
    to_conv, to_proba = split_at_last_conv(model)
    conv = keras.ops.convert_to_numpy(to_conv(model_input(images)))
    _, gradient = backend.value_and_gradient(lambda feature_map: to_proba(feature_map)[:, class_index], conv)
    weights = gradient.mean(axis=(1, 2), keepdims=True)
    cam = np.maximum((weights * conv).sum(axis=-1), 0.0)[..., None]
    cam = keras.ops.convert_to_numpy(keras.ops.image.resize(cam, images.shape[1:3], interpolation="bilinear"))[..., 0]
    return _peak_one(cam)


# Where the model looks, in one number: the share of Grad-CAM mass in the outer band of the image, BORDER_BAND of the
# side on each side. 12% covers what sits at a radiograph's edges (burnt-in text and side markers, collimation edges,
# the film's border, the black frames the sources' crops leave) and leaves the lung fields, which fill the middle of a
# frontal chest film, inside; on a 128 px input the band is 15 px wide and 41% of the image's area.
BORDER_BAND = 0.12
BORDER_SAMPLE = 50  # test images per class whose Grad-CAM is measured (a fixed sample: sample_per_class)


def border_band(size: int, band: float = BORDER_BAND) -> int:
    """Width in pixels of the outer band on a `size`-pixel side."""
    return round(band * size)


def border_area_share(size: int, band: float = BORDER_BAND) -> float:
    """The band's share of a `size` × `size` image's area: the border share of a heatmap spread evenly."""
    inner = size - 2 * border_band(size, band)
    return 1.0 - inner * inner / (size * size)


def border_share(heatmaps: np.ndarray, band: float = BORDER_BAND) -> np.ndarray:
    """Per heatmap (n, size, size): its mass in the outer band over its total mass; NaN for an empty heatmap."""
    heatmaps = np.asarray(heatmaps, dtype=np.float64)
    width = border_band(heatmaps.shape[1], band)
    total = heatmaps.sum(axis=(1, 2))
    inner = heatmaps[:, width : heatmaps.shape[1] - width, width : heatmaps.shape[2] - width].sum(axis=(1, 2))
    return np.divide(total - inner, total, out=np.full(len(total), np.nan), where=total > 0)


def border_check(heatmaps: np.ndarray, band: float = BORDER_BAND) -> tuple[dict, str | None]:
    """The mean border share of `heatmaps` beside the band's area share, and a warning when it is larger: the model
    then looks at the edges (markers, text, collimation) more than an even spread would."""
    shares = border_share(heatmaps, band)
    measured = shares[np.isfinite(shares)]
    result = {
        "border_share": float(measured.mean()) if len(measured) else float("nan"),
        "border_area_share": border_area_share(heatmaps.shape[1], band),
        "border_band": band,
        "images": float(len(measured)),
    }
    if not len(measured) or result["border_share"] <= result["border_area_share"]:
        return result, None
    return result, (
        f"edge attention: {result['border_share']:.0%} of the Grad-CAM mass lies in the outer {band:.0%} band of "
        f"the image, which is {result['border_area_share']:.0%} of its area (mean over {len(measured)} test images): "
        "the model may read markers, text or borders instead of the lungs"
    )


def sample_per_class(labels: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """A fixed sample of indices: up to `per_class` of each label, the same for every run with the same data."""
    rng = np.random.default_rng(seed)
    picks = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(picks)) if picks else np.zeros(0, int)


def save_grad_cam_figure(images: np.ndarray, heatmaps: np.ndarray, titles: list[str], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(4, len(images)) or 1
    rows = int(np.ceil(len(images) / columns)) or 1
    figure, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.2 * rows), squeeze=False)
    for axis in axes.ravel():
        axis.axis("off")
    for axis, image, heat, title in zip(axes.ravel(), images, heatmaps, titles, strict=False):
        axis.imshow(image, cmap="gray")
        axis.imshow(heat, cmap="jet", alpha=0.35)
        axis.set_title(title, fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def shortcut_check(
    features: np.ndarray, sources: np.ndarray, groups: np.ndarray, confounding: float
) -> tuple[dict, str | None]:
    """Source predictability from features, and a warning when it and source × label confounding are both high."""
    result = source_predictability(features, sources, groups) | {"cramers_v_train": confounding}
    lift = result["source_accuracy"] - result["source_majority_rate"]
    if not (lift > 0.2 and confounding > 0.5):
        return result, None
    return result, (
        f"shortcut risk: the model's features predict the source with accuracy {result['source_accuracy']:.2f} "
        f"(majority rate {result['source_majority_rate']:.2f}) and source and label are confounded "
        f"(Cramér's V {confounding:.2f}); test metrics may reflect the hospital, not the disease"
    )


def save_grad_cam_overlay(pixels: np.ndarray, heatmap: np.ndarray, path: str, min_side: int = 256) -> None:
    """One PNG: the model's input image in gray with the heatmap in colour over it, enlarged to at least `min_side`."""
    from matplotlib import colormaps
    from PIL import Image

    gray = np.repeat(pixels.astype(np.float32)[..., None] / 255.0, 3, axis=-1)
    colour = colormaps["jet"](np.clip(heatmap, 0.0, 1.0))[..., :3]
    blended = (0.65 * gray + 0.35 * colour) * 255.0
    image = Image.fromarray(np.clip(blended, 0, 255).astype(np.uint8), mode="RGB")
    scale = max(1, int(np.ceil(min_side / max(image.size))))
    image.resize((image.width * scale, image.height * scale), Image.Resampling.BILINEAR).save(path)
