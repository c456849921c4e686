"""Augmentation cost per batch, side by side in one run: the augmentation layers (covid_xray.modeling.augmentation:
one affine resampling per image) against the stack of Keras layers they replace (RandomRotation, RandomTranslation,
RandomZoom and RandomShear, each resampling the image, and RandomGaussianBlur), under TensorFlow and JAX.

    python benchmarks/augmentation.py [--batch 32] [--size 128] [--repeats 5] [--out benchmarks/augmentation.json]

Each backend runs in its own process; each stack is compiled once (tf.function / jax.jit) and then timed as the best
of `--repeats` batches.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MEASURE = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import keras, numpy as np
from keras import layers
from covid_xray.modeling.augmentation import PixelRange, RandomGamma, SensorNoise, augmenter

batch, size, repeats = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])


def keras_layers(kind):  # the stack before: one resampling per geometric layer
    kwargs = {"seed": 0, "dtype": "float32"}
    stack = [layers.RandomRotation(0.03, **kwargs), layers.RandomTranslation(0.05, 0.05, **kwargs),
             layers.RandomZoom(0.1, **kwargs), layers.RandomContrast(0.2, **kwargs),
             layers.RandomBrightness(0.1, value_range=(0, 255), **kwargs)]
    if kind == "acquisition":
        stack = [RandomGamma(**kwargs), *stack, layers.RandomShear(x_factor=0.05, y_factor=0.05, **kwargs),
                 layers.RandomGaussianBlur(factor=0.5, kernel_size=3, sigma=1.0, value_range=(0, 255), **kwargs),
                 SensorNoise(**kwargs)]
    return keras.Sequential([*stack, PixelRange(dtype="float32")])


def seconds(model, x):
    model(x[:2], training=True)
    if keras.backend.backend() == "jax":
        import jax
        state = [v.value for v in model.non_trainable_variables]
        step = jax.jit(lambda x, s: model.stateless_call([], s, x, training=True)[0])
        run = lambda: step(x, state).block_until_ready()
    else:
        import tensorflow as tf
        step = tf.function(lambda x: model(x, training=True))
        run = lambda: step(x).numpy()
    run()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


x = np.random.default_rng(0).uniform(0, 255, (batch, size, size, 1)).astype("float32")
found = {}
for kind in ("radiograph", "acquisition"):
    before, after = seconds(keras_layers(kind), x), seconds(augmenter(kind, 0), x)
    found[kind] = {"keras_layers_ms": 1000 * before, "augmentation_layers_ms": 1000 * after, "speedup": before / after}
print(json.dumps(found))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/augmentation.json"))
    args = parser.parse_args()
    report = {
        "command": " ".join(["python", *sys.argv]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "batch": args.batch,
        "size": args.size,
        "backends": {},
    }
    for backend in ("tensorflow", "jax"):
        env = os.environ | {"KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
        done = subprocess.run(
            [sys.executable, "-c", MEASURE, str(ROOT), str(args.batch), str(args.size), str(args.repeats)],
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if done.returncode:
            raise SystemExit(done.stderr[-3000:])
        report["backends"][backend] = json.loads(done.stdout.strip().splitlines()[-1])
        print(backend, report["backends"][backend], flush=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"{time.perf_counter() - started:.0f} s")
