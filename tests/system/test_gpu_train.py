"""benchmarks/gpu_train.py end to end on this CPU with --smoke, under JAX as on the GPU machine: every code path the
GPU run takes (train_model through the image cache, arrays, the frozen head, the CNN, the FLOP count), tiny."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from covid_xray.modeling.models import VGG16_CONV_LAYERS, build_backbone

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_gpu_benchmark_runs_end_to_end_under_jax_with_smoke(tmp_path):
    if os.environ.get("CI"):
        __import__("jax")  # CI installs the jax extra: the smoke run must not be skipped there
    else:
        pytest.importorskip("jax")
    rng = np.random.default_rng(0)
    np.savez_compressed(
        tmp_path / "data.npz",
        images=rng.integers(0, 255, (12, 40, 40), dtype=np.uint8),
        label=np.arange(12) % 2,
        source=np.array(["a", "b", "c"] * 4),
        group=np.array([str(i) for i in range(12)]),
    )
    backbone = build_backbone(32, "none")  # export_arrays.py's layout: float16 kernels and biases by layer name
    layers = {
        f"{name}.{kind}": weight.astype(np.float16)
        for name in VGG16_CONV_LAYERS
        for kind, weight in zip(("kernel", "bias"), backbone.get_layer(name).get_weights(), strict=True)
    }
    np.savez(tmp_path / "vgg16.npz", **layers)
    env = os.environ | {"KERAS_BACKEND": "jax"}
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks/gpu_train.py"),
            "--smoke",
            "--data",
            str(tmp_path),
            "--out",
            str(tmp_path / "out.json"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["machine"]["keras_backend"] == "jax"
    for key in ("vgg16_frozen_backbone_224", "vgg16_finetune_224", "cnn_small_128"):
        assert report[key]["input_path_images_per_s"] > 0, report[key]
    assert report["vgg16_finetune_224"]["input_path_ratio"] > 0 and report["cnn_small_128"]["input_path_ratio"] > 0
    assert report["vgg16_head_on_cached_features_224"]["head_images_per_s"] > 0
    # VGG16's conv layers cost 3 x 30.7 GFLOP to train on a 224 px image; the smoke run counts them at 32 px
    assert report["flop_limit"]["vgg16_training_gflop_per_image"] == pytest.approx(92.1 * (32 / 224) ** 2, rel=0.01)
