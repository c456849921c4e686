"""Cost of one leave-one-source-out fold at full epochs and at `evaluation.loso_epochs`, on a small real subset.

    python benchmarks/loso_fold_cost.py cnn-small vgg16-frozen

The default config's sources actualmed and covid19-image-dataset only (data/raw), actualmed held out. A VGG16's
first fold also computes the frozen backbone's cached features, which later folds reuse.
"""

import sys
import time
from pathlib import Path

import yaml

from covid_xray.config import parse_config
from covid_xray.data.ingest import ingest
from covid_xray.evaluation.loso import fold_models, run_fold

raw = yaml.safe_load(Path("configs/default.yaml").read_text())
raw["data"]["sources"] = [s for s in raw["data"]["sources"] if s["path"] in ("actualmed", "covid19-image-dataset")]
raw["data"]["cache_dir"] = ".cache/covid-xray-fold-cost"
raw["validation"] |= {"min_images_per_class": 5, "min_images_per_split_class": 1}
raw["models"] = [m for m in raw["models"] if m["name"] in sys.argv[1:]]
config = parse_config(raw)
started = time.time()
manifest, _ = ingest(config.data, config.validation)
print(f"ingest {time.time() - started:.0f} s, {len(manifest)} images", flush=True)
print(manifest.groupby(["source", "label"]).size().to_string(), flush=True)
cheap = {m.name: m for m in fold_models(config)}
for model in config.models:
    for label, variant in ((f"loso_epochs={config.evaluation.loso_epochs}", cheap[model.name]), ("full", model)):
        started = time.time()
        fold = run_fold(manifest, "actualmed", variant, config)
        print(
            f"{model.name} {label} (epochs {variant.epochs}): fold without actualmed "
            f"{time.time() - started:.0f} s wall, "
            f"train {fold['train_seconds']:.0f} s on {fold['train_images']} images, "
            f"held-out balanced accuracy {fold['balanced_accuracy']:.3f}",
            flush=True,
        )
