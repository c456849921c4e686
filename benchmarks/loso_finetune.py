"""Leave-one-source-out with VGG16 fine-tuned end to end on a GPU: does more capacity generalise to unseen sources?

    python benchmarks/export_arrays.py --size 224 --out .gpu           # here: the pipeline's ingest + preprocessing
    python benchmarks/loso_finetune.py --data .gpu --out results.json  # on a GPU machine with PyTorch

On a CPU the pipeline can only train a head on a frozen backbone. This script asks what a GPU buys: the same
offline VGG16 weights, fine-tuned end to end at 224 px with acquisition augmentation and source × label balanced
batches, and optionally with a source-adversarial head (gradient reversal, Ganin & Lempitsky 2015) that penalises
features which tell the sources apart. It uses PyTorch because the lent GPU machines have PyTorch and no
TensorFlow; the data are the pipeline's own exported arrays, the metrics the pipeline's own functions.

For each variant and seed, every source is held out in turn (train on the rest, fixed number of epochs, no model
selection on the held-out source); the shortcut check trains once on a patient split of all sources and measures how
well its features predict the source of the test images (covid_xray.evaluation.metrics.source_predictability).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from covid_xray.evaluation.metrics import covid_metrics, source_predictability  # noqa: E402

CONV_LAYERS = [  # VGG16 without top, as keras.applications.VGG16 names them; "M" is a 2×2 max pool
    "block1_conv1",
    "block1_conv2",
    "M",
    "block2_conv1",
    "block2_conv2",
    "M",
    "block3_conv1",
    "block3_conv2",
    "block3_conv3",
    "M",
    "block4_conv1",
    "block4_conv2",
    "block4_conv3",
    "M",
    "block5_conv1",
    "block5_conv2",
    "block5_conv3",
]
MEAN_BGR = (103.939, 116.779, 123.68)
VARIANTS = {
    # name: (trainable backbone, augmentation, adversarial weight, epochs, backbone lr, head lr)
    "frozen-linear": (False, False, 0.0, 30, 0.0, 1e-3),
    "finetune": (True, True, 0.0, 20, 2e-5, 1e-3),
    "finetune-adversarial": (True, True, 0.5, 20, 2e-5, 1e-3),
    "finetune-adversarial-strong": (True, True, 1.0, 30, 2e-5, 1e-3),
    "finetune-fast": (True, True, 0.0, 20, 1e-4, 1e-3),
}


class Backbone(nn.Module):
    """VGG16's 13 conv layers with weights in Keras layout (kh, kw, in, out); output: globally pooled block5_conv3."""

    def __init__(self, weights: dict[str, np.ndarray]):
        super().__init__()
        layers, channels = [], 3
        for name in CONV_LAYERS:
            if name == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            kernel = torch.from_numpy(weights[f"{name}.kernel"].astype(np.float32)).permute(3, 2, 0, 1)
            conv = nn.Conv2d(channels, kernel.shape[0], 3, padding=1)
            conv.weight.data.copy_(kernel)
            conv.bias.data.copy_(torch.from_numpy(weights[f"{name}.bias"].astype(np.float32)))
            layers += [conv, nn.ReLU(inplace=True)]
            channels = kernel.shape[0]
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(MEAN_BGR).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (b, 1, h, w) in 0..255
        return self.features(images.expand(-1, 3, -1, -1) - self.mean).mean((2, 3))


class ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight):
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.weight * grad, None


class Detector(nn.Module):
    def __init__(self, weights, n_sources: int):
        super().__init__()
        self.backbone = Backbone(weights)
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(512, 1))
        self.source_head = nn.Sequential(nn.Linear(512, 128), nn.ReLU(), nn.Linear(128, n_sources))


def augment(x: torch.Tensor) -> torch.Tensor:
    """Acquisition differences on a GPU batch (b, 1, h, w) in 0..255: small affine, gamma, contrast, brightness,
    blur and noise; never a flip (the heart is on the left)."""
    b, device = x.shape[0], x.device

    def uniform(low, high):
        return torch.empty(b, device=device).uniform_(low, high)

    angle, scale, shear = uniform(-0.17, 0.17), uniform(0.9, 1.1), uniform(-0.1, 0.1)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin + shear, uniform(-0.12, 0.12)], 1), torch.stack([sin, cos, uniform(-0.12, 0.12)], 1)], 1
    )
    x = F.grid_sample(
        x, F.affine_grid(theta, list(x.shape), align_corners=False), padding_mode="border", align_corners=False
    )
    x = (x / 255).clamp(1e-4, 1) ** torch.exp(uniform(math.log(0.7), math.log(1.4))).view(b, 1, 1, 1)
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * uniform(0.8, 1.2).view(b, 1, 1, 1) + mean + uniform(-0.08, 0.08).view(b, 1, 1, 1)
    kernel = torch.exp(-(torch.arange(-2, 3, device=device, dtype=x.dtype) ** 2) / 2)
    kernel = kernel / kernel.sum()
    blurred = F.conv2d(F.conv2d(x, kernel.view(1, 1, 1, 5), padding=(0, 2)), kernel.view(1, 1, 5, 1), padding=(2, 0))
    x = torch.where((torch.rand(b, device=device) < 0.3).view(b, 1, 1, 1), blurred, x)
    x = x + torch.randn_like(x) * uniform(0, 0.03).view(b, 1, 1, 1)
    return x.clamp(0, 1) * 255


def train(data, train_idx, variant, seed, device, batch_size=32, log=print) -> Detector:
    trainable, augmented, adversarial, epochs, backbone_lr, head_lr = VARIANTS[variant]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = Detector(data["weights"], len(data["source_names"])).to(device).to(memory_format=torch.channels_last)
    model.backbone.requires_grad_(trainable)
    groups = [{"params": [*model.head.parameters(), *model.source_head.parameters()], "lr": head_lr}]
    if trainable:
        groups.append({"params": model.backbone.parameters(), "lr": backbone_lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=1e-4)
    steps = math.ceil(len(train_idx) / batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, [g["lr"] for g in groups], total_steps=epochs * steps, pct_start=0.1
    )
    cells = data["source"][train_idx] * 2 + data["label"][train_idx]  # draw evenly over source × label cells
    _, inverse, counts = np.unique(cells, return_inverse=True, return_counts=True)
    draw = 1 / counts[inverse]
    draw /= draw.sum()
    images, labels, sources = data["images"], data["labels_t"], data["source_t"]
    model.train()
    model.backbone.train(trainable)
    for epoch in range(epochs):
        started, total = time.perf_counter(), 0.0
        for step in range(steps):
            idx = torch.from_numpy(rng.choice(train_idx, batch_size, p=draw)).to(device)
            x = images[idx].unsqueeze(1).float()
            x = augment(x) if augmented else x
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
                with torch.set_grad_enabled(trainable):
                    features = model.backbone(x)
                features = features.float()
                loss = F.binary_cross_entropy_with_logits(model.head(features).squeeze(1), labels[idx])
                if adversarial:
                    progress = (epoch * steps + step) / (epochs * steps)
                    weight = adversarial * (2 / (1 + math.exp(-10 * progress)) - 1)
                    source_logits = model.source_head(ReverseGradient.apply(features, weight))
                    loss = loss + F.cross_entropy(source_logits, sources[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item()
        if epoch in (0, epochs - 1):
            log(f"    epoch {epoch + 1}/{epochs} loss {total / steps:.3f} {time.perf_counter() - started:.1f}s")
    return model


@torch.no_grad()
def predict(model: Detector, data, idx, device, batch_size=128) -> tuple[np.ndarray, np.ndarray]:
    """(covid probability, pooled backbone features) of images `idx`."""
    model.eval()
    probability, features = [], []
    for start in range(0, len(idx), batch_size):
        x = data["images"][torch.from_numpy(idx[start : start + batch_size]).to(device)].unsqueeze(1).float()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            f = model.backbone(x.contiguous(memory_format=torch.channels_last)).float()
        probability.append(torch.sigmoid(model.head(f).squeeze(1)).cpu().numpy())
        features.append(f.cpu().numpy())
    return np.concatenate(probability), np.concatenate(features)


def score(data, idx, probability) -> dict:
    labels = np.where(data["label"][idx] == 1, "covid", "normal")
    metrics = covid_metrics(labels, np.stack([probability, 1 - probability], 1), ["covid", "normal"])
    return {
        k: round(float(metrics[k]), 4)
        for k in ("n", "n_covid", "sensitivity", "specificity", "balanced_accuracy", "roc_auc")
    }


def patient_split(data, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The split of covid_xray.data.split.hold_out_groups (same test images, checked on the exported data); that
    module needs pydantic through covid_xray.config, which the GPU machines do not have."""
    from sklearn.model_selection import StratifiedGroupKFold

    strata = data["source"] * 2 + data["label"]
    folds = StratifiedGroupKFold(round(1 / fraction), shuffle=True, random_state=seed)
    return next(folds.split(strata, strata, groups=data["group"]))


def load(folder: Path, device) -> dict:
    arrays = np.load(folder / "data.npz")
    source_names, source = np.unique(arrays["source"], return_inverse=True)
    weights = dict(np.load(folder / "vgg16.npz"))
    label = arrays["label"].astype(np.int64)
    return {
        "images": torch.from_numpy(arrays["images"]).to(device),
        "label": label,
        "source": source,
        "source_names": list(source_names),
        "group": arrays["group"],
        "weights": weights,
        "labels_t": torch.from_numpy(label).float().to(device),
        "source_t": torch.from_numpy(source).to(device),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=".gpu")
    parser.add_argument("--out", default="loso_finetune.json")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names of VARIANTS")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N images (a smoke test)")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    data = load(Path(args.data), device)
    if args.limit:
        keep = np.random.default_rng(0).permutation(len(data["label"]))[: args.limit]
        data = {k: (v[keep] if hasattr(v, "__len__") and len(v) == len(data["label"]) else v) for k, v in data.items()}
        data["images"] = data["images"][:, ::8, ::8].contiguous()
    report = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "image_size": int(data["images"].shape[-1]),
        "images": int(len(data["label"])),
        "variants": {},
    }
    started = time.perf_counter()
    for variant in args.variants.split(","):
        result = {
            "config": dict(
                zip(["trainable", "augment", "adversarial", "epochs", "backbone_lr", "head_lr"], VARIANTS[variant])
            ),
            "folds": [],
            "mean_balanced_accuracy": [],
        }
        report["variants"][variant] = result
        for seed in range(args.seeds):
            means = []
            for s, name in enumerate(data["source_names"]):
                held = np.flatnonzero(data["source"] == s)
                rest = np.flatnonzero(data["source"] != s)
                print(f"{variant} seed {seed}: without {name}", flush=True)
                model = train(data, rest, variant, seed, device)
                fold = {"seed": seed, "held_out": str(name), **score(data, held, predict(model, data, held, device)[0])}
                print(f"  {fold}", flush=True)
                result["folds"].append(fold)
                means.append(fold["balanced_accuracy"])
                report["seconds"] = round(time.perf_counter() - started, 1)
                Path(args.out).write_text(json.dumps(report, indent=1))  # after every fold: partial results survive
            result["mean_balanced_accuracy"].append(round(float(np.nanmean(means)), 4))
            print(f"{variant} seed {seed}: mean LOSO balanced accuracy {result['mean_balanced_accuracy'][-1]}")
        train_idx, test_idx = patient_split(data, 0.2, 0)
        model = train(data, train_idx, variant, 0, device)
        probability, features = predict(model, data, test_idx, device)
        result["internal_test"] = score(data, test_idx, probability)
        result["shortcut"] = source_predictability(features, data["source"][test_idx], data["group"][test_idx])
        print(f"{variant}: internal test {result['internal_test']}, shortcut {result['shortcut']}", flush=True)
        report["seconds"] = round(time.perf_counter() - started, 1)
        Path(args.out).write_text(json.dumps(report, indent=1))
    print(json.dumps({v: (r["mean_balanced_accuracy"], r["shortcut"]) for v, r in report["variants"].items()}))


if __name__ == "__main__":
    main()
