"""Pixels streamed from the image cache against the in-memory arrays they replace, measured side by side in one run.

    python benchmarks/stream.py [--data ../shared/datasets] [--cache .cache/covid-xray] [--images 1000] \
        [--sizes 1000,5000] [--out benchmarks/stream.json]

(a) one training epoch of cnn-small (default config: source × label batches, acquisition augmentation) at 128 px on
    real images, rows gathered from a float32 array in memory vs read from the image cache by the loader's workers
    (covid_xray.modeling.loader): the input-path ratio on this machine;
(b) the frozen VGG16: backbone feature extraction from the array vs from the stream (on a sample), and the head's
    epoch on the cached features (the speed-up the feature cache gives, unchanged by streaming);
(c) peak memory (RSS above the process after imports) of one epoch over a split of N synthetic images (distinct
    generated files through the image cache), the whole split stacked in memory (float32) vs streamed.
Each timing is the best of `--repeats`, the two paths' runs interleaved (arrays, stream, arrays, ...) after a warm-up of
each, so that load from other processes on the machine falls on both.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402
from timing import side_by_side  # noqa: E402  (benchmarks/ is the script's folder)

from covid_xray.config import parse_config  # noqa: E402
from covid_xray.data.dataset import image_cache, split_of  # noqa: E402
from covid_xray.data.decode import sha256_file  # noqa: E402
from covid_xray.data.ingest import read_sources  # noqa: E402
from covid_xray.data.stream import model_input
from covid_xray.modeling.features import feature_extractor
from covid_xray.modeling.loader import TrainingBatches, pixel_batches
from covid_xray.modeling.models import build_model
from covid_xray.modeling.training import with_augmentation


def real_split(data: str, cache_dir: str, count: int, size: int):
    """Up to `count` real images of the default config's sources (every source, in order), through the image cache."""
    raw = yaml.safe_load((ROOT / "configs/default.yaml").read_text())
    raw["data"] |= {"root": data, "cache_dir": cache_dir, "image_size": size}
    config = parse_config(raw)
    rows, _ = read_sources(config.data)
    rows = rows[rows["label"].isin(config.data.findings)]
    cache, kept = image_cache(config), []
    started = time.perf_counter()
    for row in rows.to_dict("records"):
        if len(kept) == count:
            break
        try:
            sha = sha256_file(row["path"])
            cache.get(row["path"], sha)
        except (OSError, ValueError):
            continue
        kept.append({**row, "sha256": sha, "group_id": str(row["patient_id"])})
    return config, split_of(pd.DataFrame(kept), config), time.perf_counter() - started


def cnn_epoch(config, split, repeats: int) -> dict:
    model_config = next(m for m in config.models if m.name == "cnn-small")
    arrays = model_input(split.pixels())  # the old path's float32 copy, held in memory

    def epoch(x):
        keras.utils.set_random_seed(0)
        model = with_augmentation(build_model(model_config, config.data.image_size, 2), model_config)
        model.compile("adam", "sparse_categorical_crossentropy")
        batches = TrainingBatches(split, model_config.batch_size, model_config.sampling, 0, x=x)
        return lambda: model.fit(batches, epochs=1, shuffle=False, verbose=0)

    times = side_by_side({"arrays": epoch(arrays), "stream": epoch(None)}, repeats)
    from_arrays, streamed = times["arrays"], times["stream"]
    return {
        "images": len(split),
        "image_size": config.data.image_size,
        "arrays_epoch_s": from_arrays,
        "stream_epoch_s": streamed,
        "arrays_images_per_s": len(split) / from_arrays,
        "stream_images_per_s": len(split) / streamed,
        "stream_over_arrays_throughput": from_arrays / streamed,
    }


def vgg_head(config, split, sample: int, repeats: int) -> dict:
    vgg = next(m for m in config.models if m.name == "vgg16-frozen").model_copy(update={"weights": "none"})
    keras.utils.set_random_seed(0)
    model = build_model(vgg, config.data.image_size, 2)
    extractor = feature_extractor(model)
    part = split.subset(range(min(sample, len(split))))
    arrays = model_input(part.pixels())
    extractor.predict(arrays[:32], batch_size=32, verbose=0)  # warm-ups on one batch: a pass costs minutes on a CPU
    extractor.predict(pixel_batches(part.subset(range(32)), 32), verbose=0)
    times = side_by_side(
        {
            "arrays": lambda: extractor.predict(arrays, batch_size=32, verbose=0),
            "stream": lambda: extractor.predict(pixel_batches(part, 32), verbose=0),
        },
        repeats,
        False,
    )
    extract_arrays, extract_stream = times["arrays"], times["stream"]
    features = np.random.default_rng(0).normal(size=(len(split), extractor.output_shape[-1])).astype("float32")
    head = model.get_layer("head")  # an epoch's cost does not depend on the feature values
    head.compile("adam", "sparse_categorical_crossentropy")
    batches = TrainingBatches(split, vgg.batch_size, vgg.sampling, 0, x=features)
    head_epoch = side_by_side({"head": lambda: head.fit(batches, epochs=1, shuffle=False, verbose=0)}, repeats)["head"]
    backbone_epoch = len(split) / (len(part) / extract_stream)  # a forward pass over the split, at least
    return {
        "sample": len(part),
        "extract_arrays_images_per_s": len(part) / extract_arrays,
        "extract_stream_images_per_s": len(part) / extract_stream,
        "stream_over_arrays_extraction": extract_arrays / extract_stream,
        "head_epoch_on_cached_features_s": head_epoch,
        "head_images_per_s": len(split) / head_epoch,
        "backbone_forward_epoch_s_at_least": backbone_epoch,
        "feature_cache_speedup_at_least": backbone_epoch / head_epoch,
    }


MEMORY_CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
from covid_xray.data.stream import Split
from covid_xray.modeling.loader import TrainingBatches
split = Split.from_record(json.load(open(sys.argv[2])))
mode = sys.argv[3]
def high_water_mb():  # VmHWM: this process's peak resident memory (ru_maxrss would count the parent's, across exec)
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024
base = high_water_mb()
x = split.pixels()[..., None].astype("float32") if mode == "arrays" else None  # the whole split in memory, or none
batches = TrainingBatches(split, 32, "source_label", 0, x=x)
seen = sum(int(batches[i][0].shape[0]) for i in range(len(batches)))
peak = high_water_mb()
print(json.dumps({"images": len(split), "seen": seen, "rss_after_imports_mb": base, "peak_rss_mb": peak,
                  "data_peak_mb": peak - base}))
"""


def synthetic_split(n: int, size: int, folder: Path, cache_root: Path):
    """`n` distinct generated pictures as PNG files, through an image cache at `size` px (default preprocessing)."""
    raw = yaml.safe_load((ROOT / "configs/default.yaml").read_text())
    raw["data"] |= {"root": str(folder), "cache_dir": str(cache_root), "image_size": size, "preprocess": {}}
    config = parse_config(raw)
    cache, rows = image_cache(config), []
    from PIL import Image

    rng = np.random.default_rng(n)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        path = folder / f"{i:06d}.png"
        if not path.exists():
            base = np.linspace(40, 200, size)[None, :] + rng.normal(0, 30, (size, size))
            Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), mode="L").save(path)
        sha = sha256_file(path)
        cache.get(path, sha)
        rows.append({"sha256": sha, "label": ("covid", "normal")[i % 2], "source": f"s{i % 3}", "group_id": str(i)})
    return split_of(pd.DataFrame(rows), config)


def memory(sizes: list[int], size: int, work: Path) -> list[dict]:
    results = []
    for n in sizes:
        split = synthetic_split(n, size, work / "files", work / "cache")
        record = work / f"split-{n}.json"
        record.write_text(json.dumps(split.to_record()))
        row = {"images": n, "image_size": size, "split_artifact_bytes": record.stat().st_size}
        for mode in ("arrays", "stream"):
            done = subprocess.run(
                [sys.executable, "-c", MEMORY_CHILD, str(ROOT), str(record), mode],
                capture_output=True,
                text=True,
                timeout=1800,
            )
            if done.returncode:
                raise SystemExit(done.stderr[-3000:])
            measured = json.loads(done.stdout.strip().splitlines()[-1])
            row[f"{mode}_data_peak_mb"] = measured["data_peak_mb"]
            row[f"{mode}_peak_rss_mb"] = measured["peak_rss_mb"]
        results.append(row)
        print(json.dumps(row), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/datasets"))
    parser.add_argument("--cache", default=str(ROOT / ".cache/covid-xray"))
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--vgg-sample", type=int, default=128)
    parser.add_argument("--sizes", default="1000,5000", help="N of the memory measurement, comma-separated")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--parts", default="a,b,c", help="which measurements: a (cnn), b (vgg16), c (memory)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/stream.json"))
    args = parser.parse_args()
    config, split, load_s = real_split(args.data, args.cache, args.images, args.size)
    print(f"{len(split)} real images ({load_s:.1f} s through the cache)", flush=True)
    parts = args.parts.split(",")
    results = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "keras_backend": keras.backend.backend(),
            "keras": keras.__version__,
        }
    }
    if "a" in parts:
        results["a_cnn_small_epoch"] = cnn_epoch(config, split, args.repeats)
        print(json.dumps(results["a_cnn_small_epoch"]), flush=True)
    if "b" in parts:
        results["b_frozen_vgg16"] = vgg_head(config, split, args.vgg_sample, args.repeats)
        print(json.dumps(results["b_frozen_vgg16"]), flush=True)
    if "c" in parts:
        with tempfile.TemporaryDirectory() as work:
            results["c_memory"] = memory([int(n) for n in args.sizes.split(",")], args.size, Path(work))
    results["peak_rss_mb_this_process"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
