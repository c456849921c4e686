"""Real-data ingest with a cold image cache, one process against all cores, side by side in one run.

    nice python benchmarks/ingest_parallel.py [--config configs/default.yaml] [--data ../shared/datasets]

Ingests the configured sources twice into fresh caches (data.workers = 1, then the machine's cores), checks that both
give the same manifest and drops, and writes decode and dedup seconds to benchmarks/ingest_parallel.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from covid_xray.config import load_config  # noqa: E402
from covid_xray.data.ingest import ingest  # noqa: E402
from covid_xray.data.parallel import available_cores  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/default.yaml")
    parser.add_argument("--data", default=str(HERE.parent.parent / "shared" / "datasets"))
    parser.add_argument("--out", default=str(HERE / "ingest_parallel.json"))
    args = parser.parse_args()
    config = load_config(args.config)
    runs, outputs = {}, {}
    for workers in (1, available_cores()):
        with tempfile.TemporaryDirectory() as cache:
            data = config.data.model_copy(update={"root": args.data, "cache_dir": cache, "workers": workers})
            started = time.perf_counter()
            manifest, drops = ingest(data, config.validation)
            total = time.perf_counter() - started
        outputs[workers] = (manifest.drop(columns="cache_key"), drops)
        runs[f"workers={workers}"] = {
            "total_seconds": round(total, 1),
            "images": len(manifest),
            "drops": len(drops),
            **{f"{k}_seconds": round(v, 1) for k, v in manifest.attrs["seconds"].items()},
        }
        print(workers, runs[f"workers={workers}"], flush=True)
    (one, one_drops), (many, many_drops) = outputs.values()
    pd.testing.assert_frame_equal(one, many)
    pd.testing.assert_frame_equal(one_drops, many_drops)
    result = {
        "command": "python benchmarks/ingest_parallel.py " + " ".join(sys.argv[1:]),
        "cores": available_cores(),
        "same_manifest_and_drops": True,
        "runs": runs,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
