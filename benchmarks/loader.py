"""Reading cached pixels, side by side in one run: `data.stream.read_pixels` (the uncompressed member's bytes) against
`np.load` (what the loader used before), per file on one thread, and one epoch of the loader's training batches
(`modeling.loader.TrainingBatches`) on 1 and 4 threads.

    python benchmarks/loader.py [--images 1024] [--sizes 128,224] [--out benchmarks/loader.json]

The files are written as the image cache writes them (`np.savez` with every field), in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from covid_xray.data.stream import CacheRef, Split, cache_folder, cached_file, read_pixels  # noqa: E402
from covid_xray.modeling.loader import TrainingBatches  # noqa: E402


def cache_split(root: Path, count: int, size: int) -> Split:
    record = {"benchmark": "loader", "image_size": size}
    folder, rng, keys = cache_folder(root, record), np.random.default_rng(size), []
    for index in range(count):
        key = f"{index:064x}"
        path = cached_file(folder, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            path,
            pixels=rng.integers(0, 256, (size, size), np.uint8),
            width=np.int64(size),
            height=np.int64(size),
            phash="0" * 16,
            thumbnail=np.zeros(1024, np.float32),
            crop_descriptor=np.zeros((96, 96), np.uint8),
        )
        keys.append(key)
    return Split(keys, np.arange(count) % 2, CacheRef(str(root), record), np.array(["a", "b"] * (count // 2)))


def rate(work, count: int) -> float:
    started = time.perf_counter()
    work()
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--sizes", default="128,224")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/loader.json"))
    args = parser.parse_args()
    report = {
        "command": " ".join(["python", *sys.argv]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "images": args.images,
        "sizes": {},
    }
    with tempfile.TemporaryDirectory() as work:
        for size in (int(s) for s in args.sizes.split(",")):
            split = cache_split(Path(work) / str(size), args.images, size)
            files = [cached_file(split.cache.folder, key) for key in split.keys]

            def with_np_load(files=files):
                for path in files:
                    with np.load(path) as data:
                        data["pixels"]

            def with_read_pixels(files=files, size=size):
                for path in files:
                    read_pixels(path, size)

            for _ in range(2):  # the page cache warm for both, the order alternated
                load, read = rate(with_np_load, len(files)), rate(with_read_pixels, len(files))
            batches = TrainingBatches(split, 128, "source_label")
            epochs = {}
            for threads in (1, 4):
                with ThreadPoolExecutor(threads) as pool:
                    epochs[threads] = rate(
                        lambda pool=pool, batches=batches: list(pool.map(batches.__getitem__, range(len(batches)))),
                        len(batches) * 128,
                    )
            report["sizes"][size] = {
                "np_load_files_per_s": load,
                "read_pixels_files_per_s": read,
                "speedup": read / load,
                "loader_epoch_images_per_s_by_threads": epochs,
            }
            print(size, report["sizes"][size], flush=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
