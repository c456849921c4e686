"""Prediction throughput on real image files, transform included, side by side with the bare model in one run.

    python benchmarks/predict_throughput.py [--images ../shared/datasets/darkcovidnet] [--count 500]
        [--config configs/default.yaml] [--models cnn-small] [--upscale SIDE] [--out benchmarks/predict_throughput.json]

For each model variant of the config (at the config's image size and preprocessing), the model is logged the way
the evaluate step logs it (the pyfunc with its transform record, in a temporary MLflow store) and loaded back with
`Predictor.from_uri`. Then, over the same files:
  predictor: `Predictor.predict_files(paths, batch_size)`: decode, the recorded preprocessing, resize, batched model
             calls, calibration and threshold (images/s);
  raw:       `keras_model.predict` on the already transformed arrays (images/s);
  cold:      a fresh Python process that imports the library, loads the model and answers the files (seconds);
and the ratios predictor / raw and cold / raw (target >= 0.5). From 64 files on, the predictor transforms them in
one spawned process per core while the model scores finished batches. Each figure but cold is the best of
`--repeats` timed passes after a warm-up.
Untrained weights: throughput does not depend on them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SUFFIXES = {".png", ".jpg", ".jpeg"}


def image_files(folder: Path, count: int, transform: InferenceTransform) -> list[Path]:
    """The first `count` files under `folder` (sorted) that the transform accepts."""
    chosen = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES):
        try:
            transform.decode(path)
        except ValueError:
            continue
        chosen.append(path)
        if len(chosen) == count:
            break
    return chosen


def upscaled(paths: list[Path], side: int, folder: Path) -> list[Path]:
    """Grayscale JPEG copies of `paths` resized (bicubic) to a longer side of `side` pixels, in `folder`."""
    folder.mkdir(parents=True)
    copies = []
    for number, path in enumerate(paths):
        image = Image.open(path).convert("L")
        scale = side / max(image.size)
        copies.append(folder / f"{number:05d}.jpg")
        image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC).save(
            copies[-1], quality=95
        )
    return copies


def measure(variant, config, paths: list[Path], batch_size: int, repeats: int, store: Path) -> dict:
    transform = InferenceTransform.from_data(config.data, config.validation.min_side)
    model = build_model(variant, config.data.image_size, len(config.classes))
    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    with mlflow.start_run(run_name=variant.name):
        uri = log_model(model, transform, OperatingPoint(), config.classes, paths[0])
    predictor = Predictor.from_uri(uri)
    answers = predictor.predict_files(paths, batch_size)
    failed = [str(a) for a in answers if isinstance(a, ValueError)]
    if failed:
        raise RuntimeError(f"{len(failed)} files failed: {failed[:3]}")
    batch = transform.batch([transform(p) for p in paths])
    predictor_s = best_seconds(lambda: predictor.predict_files(paths, batch_size), repeats)
    raw_s = best_seconds(lambda: predictor.keras_model.predict(batch, batch_size=batch_size, verbose=0), repeats)
    transform_s = best_seconds(lambda: [transform(p) for p in paths], 1)
    cold_s = cold_seconds(uri, paths, batch_size)
    return {
        "model": variant.name,
        "kind": variant.kind,
        "images": len(paths),
        "batch_size": batch_size,
        "predictor_images_per_s": len(paths) / predictor_s,
        "raw_model_predict_images_per_s": len(paths) / raw_s,
        "transform_only_images_per_s": len(paths) / transform_s,
        "ratio": raw_s / predictor_s,
        "cold_seconds": cold_s,
        "cold_ratio": raw_s / cold_s,
    }


# A fresh interpreter that loads the model and answers the files, timed from its first line: what a `covid-xray
# predict` of these files costs with Keras's import and the model's load included (the CLI's argument checks aside).
COLD = """
import time; started = time.perf_counter()
import sys
from covid_xray.serving.predict import Predictor
paths = open(sys.argv[2]).read().splitlines()
answers = Predictor.from_uri(sys.argv[1]).predict_files(paths, int(sys.argv[3]))
assert not [a for a in answers if isinstance(a, ValueError)]
print(time.perf_counter() - started)
"""


def cold_seconds(uri: str, paths: list[Path], batch_size: int) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as listing:
        listing.write("\n".join(str(p) for p in paths))
        listing.flush()
        command = [sys.executable, "-c", COLD, uri, listing.name, str(batch_size)]
        environment = os.environ | {"MLFLOW_TRACKING_URI": mlflow.get_tracking_uri()}
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=environment)  # noqa: S603
    if done.returncode:
        raise RuntimeError(f"the cold predict failed: {done.stderr[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=str(ROOT.parent / "shared/datasets/darkcovidnet"))
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--config", default=str(ROOT / "configs/default.yaml"))
    parser.add_argument("--models", default="cnn-small")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--upscale",
        type=int,
        default=None,
        help="answer JPEG copies (quality 95) of the images with this longer side: files as large as a hospital's",
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks/predict_throughput.json"))
    args = parser.parse_args()
    config = load_config(args.config)
    transform = InferenceTransform.from_data(config.data, config.validation.min_side)
    paths = image_files(Path(args.images), args.count, transform)
    if len(paths) < args.count:
        raise SystemExit(f"only {len(paths)} usable images under {args.images}, asked for {args.count}")
    variants = {m.name: m for m in config.models}
    results = []
    with tempfile.TemporaryDirectory() as store:
        if args.upscale:
            paths = upscaled(paths, args.upscale, Path(store) / "upscaled")
        for name in args.models.split(","):
            results.append(measure(variants[name], config, paths, args.batch_size, args.repeats, Path(store)))
            print(json.dumps(results[-1]))
    report = {
        "command": " ".join(["python", *sys.argv]),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "gpus": backend.accelerators(),
            "keras_backend": backend.name(),
            "keras": keras.__version__,
        },
        "data": {
            "folder": args.images,
            "images": len(paths),
            "upscaled_to": args.upscale,
            "image_size": config.data.image_size,
            "transform": transform.to_record(),
        },
        "results": results,
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    # Imported here, not at the top: `predict` transforms in spawned worker processes, and each of them imports this
    # script again (as __mp_main__); with Keras and MLflow at the top, every worker would start TensorFlow.
    import keras
    import mlflow
    from PIL import Image
    from timing import best_seconds  # benchmarks/ is the script's folder

    from covid_xray.config import load_config
    from covid_xray.data.transform import InferenceTransform
    from covid_xray.evaluation.decision import OperatingPoint
    from covid_xray.modeling import backend
    from covid_xray.modeling.models import build_model
    from covid_xray.serving.predict import Predictor
    from covid_xray.serving.pyfunc import log_model

    main()
