"""Training throughput on a GPU through the library's own `train_model` and input path, under Keras on JAX, with the
ratios that say how good it is: against `fit` on in-memory arrays of the same batches (the input-path ratio), against
a `torch.compile`d PyTorch VGG16 measured in the same run (the peer ratio), and against the chip's FLOP limit.

    python benchmarks/export_arrays.py --size 160 --out .gpu       # here: the pipeline's own pixels and VGG16 weights
    KERAS_BACKEND=jax python benchmarks/gpu_train.py --data .gpu --out gpu_train.json    # on the GPU machine
    KERAS_BACKEND=jax python benchmarks/gpu_train.py --smoke --data DIR --out x.json    # CI: tiny, on the CPU

Needs no TensorFlow, ZenML or MLflow: only Keras, pydantic, NumPy, pandas, PyYAML, h5py and the library's training
modules (`covid_xray.modeling`), and JAX (PyTorch for the peer, when installed). On a machine without Keras and
pydantic, carry their wheels (about 6 MB):

    pip download --no-deps -d wheels keras==3.15.1 namex==0.1.0 optree==0.19.0 pydantic==2.13.4 \
        pydantic-core==2.46.4 annotated-types==0.7.0 typing-inspection==0.4.2 typing-extensions==4.15.0
    pip install --no-index --find-links wheels keras pydantic      # there

What it measures, each after a warm-up that compiles (its time is not counted):
- vgg16: the default GPU recipe (configs/gpu.yaml) at 224 px in mixed bfloat16: one phase with the backbone frozen
  (trained on images, through the backbone) and then the whole network fine-tuned end to end (`fine_tune_blocks: 5`),
  both through `train_model`, which streams the rows from an image cache with the project's PyDataset and augments
  inside the model; then the same model fitted on in-memory arrays of the same images;
- vgg16-head: the frozen backbone's features extracted once through the input path (`FeatureCache`), and the head
  trained on them;
- cnn-small: configs/gpu.yaml's CNN at 128 px in mixed bfloat16, through `train_model` and on arrays;
- peer: VGG16 fine-tuned in plain PyTorch, `torch.compile`, bfloat16 autocast, channels-last, synthetic tensors on the
  GPU (no input path at all), in a subprocess so the two frameworks do not share the GPU's memory;
- the chip's bfloat16 matmul rate (JAX, 8192 x 8192) and VGG16's training FLOPs per image at 224 px (3 x forward,
  counted from the conv shapes), so the FLOP limit in images/s is measured, not taken from a data sheet.
The 160 px exported images are resized to 224 px and 128 px here (bilinear): throughput does not depend on content.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # leave GPU memory to the PyTorch peer too
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from covid_xray.config import ModelConfig  # noqa: E402
from covid_xray.data.stream import CacheRef, Split, cache_folder, cached_file, model_input  # noqa: E402
from covid_xray.modeling import backend  # noqa: E402
from covid_xray.modeling.features import FeatureCache, feature_extractor  # noqa: E402
from covid_xray.modeling.loader import TrainingBatches  # noqa: E402
from covid_xray.modeling.models import build_model, unfreeze_last_blocks  # noqa: E402
from covid_xray.modeling.training import train_model, with_augmentation  # noqa: E402

VGG16_STAGES = [(1, 2), (2, 2), (4, 3), (8, 3), (16, 3)]  # (downsampling, convs) of each block
VGG16_CHANNELS = [64, 128, 256, 512, 512]


class Throughput(keras.callbacks.Callback):
    """Images/s of each epoch, timed from the end of batch `skip` to the end of the last batch (the loss read at both
    ends, so the device has finished them): compilation, validation and checkpoints fall outside."""

    def __init__(self, batch_size: int, skip: int = 2):
        super().__init__()
        self.batch_size, self.skip, self.rates, self.epochs = batch_size, skip, [], []
        self.started: float | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self.started = None

    def on_train_batch_end(self, batch, logs=None):
        steps = self.params.get("steps") or 0
        if batch == self.skip or batch == steps - 1:
            float(keras.ops.convert_to_numpy(logs["loss"]))  # wait for the device
            now = time.perf_counter()
            if batch == self.skip:
                self.started = now
            elif self.started is not None and steps - 1 > self.skip:
                self.rates.append((steps - 1 - self.skip) * self.batch_size / (now - self.started))

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(epoch)


def vgg16_training_flops(size: int) -> float:
    """FLOPs to train VGG16's conv layers on one 3-channel `size` px image: 3 x the forward pass (2 per
    multiply-add)."""
    forward, channels = 0.0, 3
    for (down, convs), out in zip(VGG16_STAGES, VGG16_CHANNELS, strict=True):
        side = size / down
        for _ in range(convs):
            forward += 2 * side * side * 9 * channels * out
            channels = out
    return 3 * forward


def matmul_tflops(size: int, repeats: int) -> float:
    """Measured bfloat16 matmul rate of the first accelerator (JAX), TFLOP/s."""
    import jax
    import jax.numpy as jnp

    a = jnp.ones((size, size), jnp.bfloat16)
    step = jax.jit(lambda x: x @ a)
    x = step(a).block_until_ready()
    started = time.perf_counter()
    for _ in range(repeats):
        x = step(x)
    x.block_until_ready()
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e12


def resized(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 images resized to `size` px (bilinear), in chunks."""
    out = [
        np.clip(
            keras.ops.convert_to_numpy(keras.ops.image.resize(chunk[..., None].astype("float32"), (size, size))), 0, 255
        )
        for chunk in np.array_split(images, max(1, len(images) // 256))
    ]
    return np.concatenate(out)[..., 0].astype(np.uint8)


def image_cache_split(images: np.ndarray, labels: np.ndarray, sources: np.ndarray, root: Path, count: int) -> Split:
    """A split of `count` rows (the images repeated) whose pixels are files of an image cache under `root`, as ingest
    leaves them: training reads them through the project's input path."""
    record = {"benchmark": "gpu_train", "image_size": int(images.shape[1])}
    folder = cache_folder(root, record)
    keys = []
    for index, pixels in enumerate(images):
        key = f"{index:064x}"
        path = cached_file(folder, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, pixels=pixels)
        keys.append(key)
    rows = np.arange(count) % len(images)
    return Split([keys[i] for i in rows], labels[rows].astype(np.int32), CacheRef(str(root), record), sources[rows])


def through_train_model(config: ModelConfig, train: Split, val: Split, size: int, work: Path) -> dict:
    meter = Throughput(config.batch_size)
    started = time.perf_counter()
    result = train_model(
        config,
        train,
        val,
        n_classes=2,
        image_size=size,
        image_cache_key="bench",
        cache_dir=str(work),
        callbacks=[meter],
        verbose=0,
    )
    phases = {
        "rates": [round(r, 1) for r in meter.rates],
        "wall_s": round(time.perf_counter() - started, 1),
        "feature_cache_misses": result.feature_cache_misses,
    }
    return phases


def on_arrays(config: ModelConfig, train: Split, size: int, epochs: int, fine_tune: bool) -> list[float]:
    """The same model fitted on in-memory arrays of the same rows (Keras' array adapter), images/s per epoch."""
    keras.utils.set_random_seed(config.seed)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(config.precision)
    try:
        with backend.distribution():
            model = build_model(config, size, 2)
            if fine_tune:
                unfreeze_last_blocks(model, config.fine_tune_blocks)
            trained = with_augmentation(model, config)
            trained.compile(keras.optimizers.Adam(1e-5), "sparse_categorical_crossentropy")
            x, y = model_input(train.pixels()), np.asarray(train.labels)
            meter = Throughput(config.batch_size)
            trained.fit(x, y, batch_size=config.batch_size, epochs=epochs, shuffle=False, callbacks=[meter], verbose=0)
    finally:
        keras.config.set_dtype_policy(previous)
    return [round(r, 1) for r in meter.rates]


def best(rates: list[float], skip: int = 1) -> float:
    """The median of the epochs after the first `skip` (which compile)."""
    kept = rates[skip:] or rates
    return float(np.median(kept)) if kept else float("nan")


PEER = r"""
import json, sys, time
import numpy as np, torch, torch.nn.functional as F
from torch import nn
size, batch, steps, weights = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
layers, channels, source = [], 3, np.load(weights)
for block, convs in enumerate([2, 2, 3, 3, 3], start=1):
    if block > 1:
        layers.append(nn.MaxPool2d(2))
    for number in range(1, convs + 1):
        kernel = torch.from_numpy(source[f"block{block}_conv{number}.kernel"].astype(np.float32)).permute(3, 2, 0, 1)
        conv = nn.Conv2d(channels, kernel.shape[0], 3, padding=1)
        conv.weight.data.copy_(kernel)
        layers += [conv, nn.ReLU(inplace=True)]
        channels = kernel.shape[0]
model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 128), nn.ReLU(), nn.Linear(128, 2))
device = "cuda" if torch.cuda.is_available() else "cpu"
model = model.to(device, memory_format=torch.channels_last)
optimizer = torch.optim.Adam(model.parameters(), 1e-5)
compiled = torch.compile(model)
x = torch.randn(batch, 3, size, size, device=device).to(memory_format=torch.channels_last)
y = torch.randint(0, 2, (batch,), device=device)
def step():
    with torch.autocast(device, dtype=torch.bfloat16):
        loss = F.cross_entropy(compiled(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
for _ in range(10):
    step()
if device == "cuda":
    torch.cuda.synchronize()
started = time.perf_counter()
for _ in range(steps):
    step()
if device == "cuda":
    torch.cuda.synchronize()
print(json.dumps({"images_per_s": steps * batch / (time.perf_counter() - started), "torch": torch.__version__,
                  "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu"}))
"""


def peer(size: int, batch: int, steps: int, weights: Path) -> dict:
    try:
        import torch  # noqa: F401
    except ImportError:
        return {"skipped": "PyTorch is not installed here"}
    done = subprocess.run(
        [sys.executable, "-c", PEER, str(size), str(batch), str(steps), str(weights)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    if done.returncode:
        return {"failed": done.stderr[-2000:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def loader_rate(train: Split, config: ModelConfig, workers: int) -> float:
    """Images/s of the input path alone: one epoch of training batches read by `workers` threads, no model."""
    batches = TrainingBatches(train, config.batch_size, config.sampling, config.seed)
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        count = sum(len(y) for _, y in pool.map(batches.__getitem__, range(len(batches))))
    return count / (time.perf_counter() - started)


def vgg16_parts(vgg: ModelConfig, train: Split, val: Split, size: int, epochs: int, work: Path) -> dict:
    streamed = through_train_model(vgg, train, val, size, work / "run-vgg16")
    frozen, fine = streamed["rates"][:epochs], streamed["rates"][epochs:]
    arrays = on_arrays(vgg, train, size, epochs, fine_tune=True)
    return {
        "vgg16_frozen_backbone_224": {"input_path_images_per_s": best(frozen), "epochs": frozen},
        "vgg16_finetune_224": {
            "input_path_images_per_s": best(fine),
            "epochs": fine,
            "arrays_images_per_s": best(arrays),
            "arrays_epochs": arrays,
            "input_path_ratio": best(fine) / best(arrays),
            "train_model_wall_s": streamed["wall_s"],
            "loader_alone_images_per_s": {w: loader_rate(train, vgg, w) for w in (1, 4)},
        },
    }


def augmentation_part(vgg: ModelConfig, train: Split, size: int, epochs: int, work: Path) -> dict:
    """Where the fine-tuning's time goes: the same end-to-end fit on in-memory arrays without augmentation and with
    each kind, and through `train_model` without augmentation."""
    rates = {}
    for kind in ("none", "radiograph", "acquisition"):
        rates[kind] = on_arrays(vgg.model_copy(update={"augment": kind}), train, size, epochs, fine_tune=True)
    plain = vgg.model_copy(update={"augment": "none"})
    streamed = through_train_model(
        plain, train, train.subset(np.arange(2 * plain.batch_size)), size, work / "run-plain"
    )
    fine = streamed["rates"][epochs:]
    return {
        "vgg16_finetune_224_by_augmentation": {
            "arrays_images_per_s": {kind: best(r) for kind, r in rates.items()},
            "arrays_epochs": rates,
            "input_path_no_augmentation_images_per_s": best(fine),
            "input_path_no_augmentation_epochs": streamed["rates"],
        }
    }


def vgg16_head_part(vgg: ModelConfig, train: Split, val: Split, size: int, work: Path) -> dict:
    head = vgg.model_copy(update={"augment": "none", "fine_tune_blocks": 0, "fine_tune_epochs": 0})
    keras.utils.set_random_seed(0)
    keras.config.set_dtype_policy(head.precision)
    try:
        extractor = feature_extractor(build_model(head, size, 2))
        cache = FeatureCache(work / "features", "bench")
        warm = min(len(train), 4 * head.batch_size)
        started = time.perf_counter()
        cache.features(extractor, train.subset(np.arange(warm)), head.batch_size)  # compiles
        first = time.perf_counter() - started
        started = time.perf_counter()
        cache.features(extractor, train, head.batch_size)
        extract_s = time.perf_counter() - started
    finally:
        keras.config.set_dtype_policy("float32")
    head_run = through_train_model(head, train, val, size, work / "run-head")
    return {
        "vgg16_head_on_cached_features_224": {
            "feature_extraction_images_per_s": (len(train) - warm) / max(extract_s, 1e-9),
            "first_extraction_s_with_compile": round(first, 1),
            "head_images_per_s": best(head_run["rates"]),
            "head_epochs": head_run["rates"],
        }
    }


def cnn_part(cnn: ModelConfig, train: Split, val: Split, size: int, epochs: int, work: Path) -> dict:
    streamed = through_train_model(cnn, train, val, size, work / "run-cnn")
    arrays = on_arrays(cnn, train, size, epochs, fine_tune=False)
    rate = best(streamed["rates"])
    return {
        "cnn_small_128": {
            "input_path_images_per_s": rate,
            "epochs": streamed["rates"],
            "arrays_images_per_s": best(arrays),
            "arrays_epochs": arrays,
            "input_path_ratio": rate / best(arrays),
            "loader_alone_images_per_s": {w: loader_rate(train, cnn, w) for w in (1, 4)},
        }
    }


def attempt(report: dict, out: Path, part: str, work: Callable[[], dict]) -> None:
    """Run one part of the benchmark; a failure is recorded with its traceback and the others still run. The report
    so far is written after each part, so a run stopped by its time limit keeps what it measured."""
    started = time.perf_counter()
    try:
        report.update(work())
    except Exception:  # noqa: BLE001 - one part's failure must not lose the others' numbers
        report.setdefault("failed", {})[part] = traceback.format_exc()[-3000:]
    report.setdefault("part_seconds", {})[part] = round(time.perf_counter() - started, 1)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({part: {k: v for k, v in report.items() if k.startswith(part.split("-")[0])}}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder of data.npz and vgg16.npz (benchmarks/export_arrays.py)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--images", type=int, default=4096, help="rows per epoch (the exported images, repeated)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each timed phase (the first compiles)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on any machine: every code path, no numbers")
    parser.add_argument(
        "--parts", default="vgg16,peer,flop,cnn,vgg16-head,augmentation", help="which parts to run, comma-separated"
    )
    args = parser.parse_args()
    out = Path(args.out)
    data = np.load(Path(args.data) / "data.npz")
    weights = Path(args.data) / "vgg16.npz"
    images, labels, sources = data["images"], data["label"].astype(np.int32), data["source"]
    sizes = {"vgg16": 32, "cnn": 32} if args.smoke else {"vgg16": 224, "cnn": 128}
    batch = 4 if args.smoke else 128
    count = min(args.images, 16) if args.smoke else args.images
    epochs = 2 if args.smoke else args.epochs
    common = dict(
        head={"dense_units": [128]},
        epochs=epochs,
        augment="acquisition",
        sampling="source_label",
        precision="mixed_bfloat16",
        batch_size=batch,
        early_stopping_patience=0,
    )
    vgg = ModelConfig(
        name="vgg16-finetune",
        kind="vgg16",
        weights=str(weights),
        fine_tune_blocks=5,
        fine_tune_epochs=epochs,
        fine_tune_learning_rate=1e-5,
        **common,
    )
    cnn = ModelConfig(name="cnn-small", kind="cnn", conv_filters=[32, 64, 128], **common)
    report: dict = {
        "command": " ".join(["python", *sys.argv]),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "accelerators": backend.accelerators(),
            "keras": keras.__version__,
            "keras_backend": backend.name(),
        },
        "data": {
            "exported_images": len(images),
            "exported_size": int(images.shape[1]),
            "rows_per_epoch": count,
            "batch_size": batch,
            "epochs_per_phase": epochs,
        },
    }
    print(json.dumps(report), flush=True)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        splits = {}
        for name in ("vgg16", "cnn"):
            train = image_cache_split(resized(images, sizes[name]), labels, sources, work / f"cache-{name}", count)
            splits[name] = train, train.subset(np.arange(min(len(train), 2 * batch)))
        # In order of importance, each part's numbers written as soon as it ends.
        peer_steps = 5 if args.smoke else 60
        parts = {
            "vgg16": lambda: vgg16_parts(vgg, *splits["vgg16"], sizes["vgg16"], epochs, work),
            "peer": lambda: {"peer_torch_compile_vgg16_224": peer(sizes["vgg16"], batch, peer_steps, weights)},
            "flop": lambda: flop_limit(report, sizes["vgg16"], args.smoke),
            "augmentation": lambda: augmentation_part(vgg, splits["vgg16"][0], sizes["vgg16"], epochs, work),
            "cnn": lambda: cnn_part(cnn, *splits["cnn"], sizes["cnn"], epochs, work),
            "vgg16-head": lambda: vgg16_head_part(vgg, *splits["vgg16"], sizes["vgg16"], work),
        }
        for part in args.parts.split(","):
            attempt(report, out, part, parts[part])
    print(json.dumps(report, indent=2))


def flop_limit(report: dict, size: int, smoke: bool) -> dict:
    """The chip's measured bfloat16 matmul rate, VGG16's training FLOPs per image, and what fraction of that limit
    the fine-tuning (through the input path) reached; the ratio to the PyTorch peer."""
    flops = vgg16_training_flops(size)
    peak = matmul_tflops(256 if smoke else 8192, 3 if smoke else 50)
    fine_rate = report.get("vgg16_finetune_224", {}).get("input_path_images_per_s", float("nan"))
    found = {
        "flop_limit": {
            "vgg16_training_gflop_per_image": flops / 1e9,
            "matmul_bf16_tflops": peak,
            "limit_images_per_s": peak * 1e12 / flops,
            "achieved_tflops": fine_rate * flops / 1e12,
            "ratio": fine_rate * flops / (peak * 1e12),
        }
    }
    peer_rate = report.get("peer_torch_compile_vgg16_224", {}).get("images_per_s")
    if peer_rate:
        found["peer_ratio"] = fine_rate / peer_rate
    return found


if __name__ == "__main__":
    main()
