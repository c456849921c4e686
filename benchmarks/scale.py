"""Scale benchmark: wall time and peak memory per pipeline stage on N synthetic chest-X-ray phantoms.

    nice python benchmarks/scale.py --n 1000 10000 [--work /tmp/scale-bench] [--out benchmarks/scale.json]

For each N: writes phantoms 0..N-1 (benchmarks/phantoms.py, class-folder layout), then times, on the default
config's models and preprocessing with only the data source replaced:
  ingest (read, hash, decode, preprocess into a cold image cache, in parallel), dedup (all duplicate checks),
  split_validation (patient split, rebalancing and the GX checks), cnn_epoch (one training epoch of the CNN),
  evaluation (the CNN's predictions on the test split), vgg16_features_sample (the frozen VGG16's one-off
  feature extraction on a sample, reported per image), vgg16_head_epoch (one epoch of its head on N cached
  feature vectors).
Peak RSS (this process and its worker processes, sampled every 0.1 s) is recorded per stage. Writes the results
JSON (with the 100k/10k or largest/second-largest per-image time ratio per stage) and a log-log PNG beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from phantoms import FOLDERS, write_phantoms  # noqa: E402

from covid_xray.config import RunConfig, SourceConfig, load_config  # noqa: E402

STAGES = ["ingest", "dedup", "split_validation", "cnn_epoch", "evaluation", "vgg16_features_sample", "vgg16_head_epoch"]
FEATURE_SAMPLE = 64


def benchmark_config(root: Path, cache_dir: Path, base: str = "configs/default.yaml") -> RunConfig:
    """The default config on the phantoms: its preprocessing, split, validation and models; one folder source."""
    config = load_config(base)
    source = SourceConfig(
        reader="folder",
        path="phantoms",
        name="phantoms",
        patient_pattern=r"^(P\d+)_",
        labels={folder: label for label, folder in FOLDERS.items()},
    )
    data = config.data.model_copy(update={"root": str(root), "sources": [source], "cache_dir": str(cache_dir)})
    data = type(data).model_validate(data.model_dump())
    validation = config.validation.model_copy(update={"allowed_views": [*config.validation.allowed_views]})
    return config.model_copy(update={"data": data, "validation": validation})


class PeakMemory:
    """Peak resident memory (bytes) of this process plus its children while the `with` block runs."""

    def __init__(self, interval: float = 0.1):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = me.memory_info().rss
            for child in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):  # a child that ended meanwhile
                    total += child.memory_info().rss
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


@contextmanager
def stage(results: dict, name: str):
    started = time.perf_counter()
    with PeakMemory() as memory:
        yield results.setdefault(name, {})
    results[name].setdefault("seconds", time.perf_counter() - started)
    # Wall time is the measure; the 1-minute load average at the end shows whether anything else shared the cores.
    results[name]["load_average"] = round(os.getloadavg()[0], 2)
    results[name]["peak_rss_gb"] = round(memory.peak / 2**30, 3)
    results[name]["seconds"] = round(results[name]["seconds"], 2)
    print(f"  {name}: {results[name]}", flush=True)


def model_stages(config: RunConfig, prepared, results: dict) -> None:
    """Training and evaluation stages on the pipeline's data path: splits by reference, pixels streamed from the
    image cache by the loader (covid_xray/modeling/loader.py), so memory does not grow with N."""
    import keras

    from covid_xray.data.dataset import split_of
    from covid_xray.modeling.features import feature_extractor
    from covid_xray.modeling.loader import pixel_batches
    from covid_xray.modeling.models import build_head, build_vgg16
    from covid_xray.modeling.training import train_model

    split = prepared.manifest
    cnn = next(m for m in config.models if m.kind == "cnn").model_copy(update={"epochs": 1})
    vgg = next(m for m in config.models if m.kind == "vgg16")
    classes = len(config.classes)
    with stage(results, "cnn_epoch") as out:
        train = split_of(prepared.train_rows, config)
        val = split_of(split[split["split"] == "val"], config)
        started = time.perf_counter()
        trained = train_model(
            cnn,
            train,
            val,
            n_classes=classes,
            image_size=config.data.image_size,
            image_cache_key=str(split["cache_key"].iloc[0]),
            cache_dir=str(config.data.cache_dir),
            use_feature_cache=False,
            verbose=0,
        )
        out.update(images=len(train), fit_seconds=round(time.perf_counter() - started, 2))
    with stage(results, "evaluation") as out:
        test = split_of(split[split["split"] == "test"], config)
        trained.model.predict(pixel_batches(test, 64), verbose=0)
        out["images"] = len(test)
    with stage(results, "vgg16_features_sample") as out:
        sample = split_of(prepared.train_rows.iloc[:FEATURE_SAMPLE], config)
        extractor = feature_extractor(build_vgg16(vgg, config.data.image_size, classes))
        extractor.predict(pixel_batches(sample.subset([0, 1]), 2), verbose=0)  # build and trace before timing
        started = time.perf_counter()
        features = extractor.predict(pixel_batches(sample, 32), verbose=0)
        out["seconds_per_image"] = round((time.perf_counter() - started) / len(sample), 4)
        out["images"] = len(sample)
    with stage(results, "vgg16_head_epoch") as out:
        # One epoch of the head on as many cached feature vectors as there are training rows: the sample's
        # vectors repeated (a head epoch's cost depends on the rows and the vector length, not on the values).
        rows = np.resize(features, (len(prepared.train_rows), features.shape[1])).astype("float32")
        labels = np.resize(sample.labels, len(rows)).astype("int32")
        head = build_head(features.shape[1], classes, vgg.head)
        head.compile(optimizer=keras.optimizers.Adam(vgg.learning_rate), loss="sparse_categorical_crossentropy")
        order = np.random.default_rng(0).permutation(len(rows))
        head.fit(rows[order], labels[order], batch_size=vgg.batch_size, epochs=1, shuffle=False, verbose=0)
        out["images"] = len(rows)


def run_one(n: int, work: Path, workers: int | None) -> dict:
    from covid_xray.data.dataset import prepare
    from covid_xray.data.ingest import ingest
    from covid_xray.data.validation import validate_manifest

    root, cache = work / f"n{n}", work / f"n{n}-cache"
    started = time.perf_counter()
    write_phantoms(root, n, workers, pool=work / "phantoms")
    generated = time.perf_counter() - started
    import shutil

    shutil.rmtree(cache, ignore_errors=True)  # a cold image cache: ingest decodes every image
    config = benchmark_config(root, cache)
    if workers:
        config = config.model_copy(update={"data": config.data.model_copy(update={"workers": workers})})
    results: dict = {}
    print(f"N = {n} (phantoms written in {generated:.0f} s)", flush=True)
    with stage(results, "ingest") as out:
        manifest, drops = ingest(config.data, config.validation)
        seconds = manifest.attrs["seconds"]
        out.update(seconds=seconds["decode"], images=len(manifest), drops=len(drops))
    # ingest ends with deduplication, in the same process: its wall time is taken out of ingest's, and the two share
    # one peak-memory measurement
    results["dedup"] = {
        "seconds": round(seconds["dedup"], 2),
        "load_average": results["ingest"]["load_average"],
        "peak_rss_gb": results["ingest"]["peak_rss_gb"],
        "duplicate_drops": int(drops["reason"].str.contains("duplicate").sum()),
    }
    results["ingest"]["seconds"] = round(seconds["decode"], 2)
    print(f"  dedup: {results['dedup']}", flush=True)
    with stage(results, "split_validation") as out:
        prepared = prepare(manifest, config)
        report = validate_manifest(prepared.manifest, config.validation, config.data.findings)
        out.update(checks=len(report.checks), failed=[c.expectation for c in report.checks if not c.success])
    model_stages(config, prepared, results)
    return {
        "n": n,
        "phantom_seconds": round(generated, 1),
        "duplicate_examples": drops.loc[drops["reason"].str.contains("duplicate"), "reason"].head(5).tolist(),
        "stages": results,
    }


def ratios(runs: list[dict]) -> dict:
    """Per-image time at the largest N over per-image time at the next largest, per stage."""
    if len(runs) < 2:
        return {}
    small, large = sorted(runs, key=lambda r: r["n"])[-2:]
    return {
        name: round(
            (large["stages"][name]["seconds"] / large["n"]) / (small["stages"][name]["seconds"] / small["n"]), 2
        )
        for name in STAGES
        if name != "vgg16_features_sample" and small["stages"][name]["seconds"] > 0
    }


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [r["n"] for r in runs]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for name in STAGES:
        key = "seconds_per_image" if name == "vgg16_features_sample" else "seconds"
        values = [r["stages"][name][key] * (r["n"] if key == "seconds_per_image" else 1) for r in runs]
        label = "vgg16 feature extraction (all N, from the sample)" if key == "seconds_per_image" else name
        left.loglog(ns, values, "o-", label=label)
        right.loglog(ns, [r["stages"][name]["peak_rss_gb"] for r in runs], "o-", label=name)
    left.set(xlabel="images (N)", ylabel="wall time (s)", title="time per stage")
    right.set(xlabel="images (N)", ylabel="peak RSS (GB)", title="peak memory per stage")
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--work", default="/tmp/scale-bench", help="phantoms and image caches go here")
    parser.add_argument("--workers", type=int, default=None, help="ingest and generator processes (default: all cores)")
    parser.add_argument("--out", default=str(HERE / "scale.json"))
    args = parser.parse_args(argv)
    out, runs = Path(args.out), []
    for n in args.n:  # the JSON and plot are rewritten after every N, so a long run leaves its finished sizes
        runs.append(run_one(n, Path(args.work), args.workers))
        result = {
            "command": "python benchmarks/scale.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "cores": psutil.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "runs": runs,
            "per_image_time_ratio": ratios(runs),
        }
        out.write_text(json.dumps(result, indent=2) + "\n")
        plot(runs, out.with_suffix(".png"))
    print(json.dumps(result["per_image_time_ratio"]), flush=True)
    return result


if __name__ == "__main__":
    main()
