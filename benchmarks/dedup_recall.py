"""Recall, false-positive rate and time of duplicate detection on the shared data (see tests/known_copies.py).

    python benchmarks/dedup_recall.py [--config configs/default.yaml] [--data ../shared/datasets]

Decodes through the run's image cache (a second run reads it), times every stage of the detection on all images
of the configured sources plus hannover/png, and writes benchmarks/dedup_recall.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from known_copies import decoded_images, detection_rates  # noqa: E402

from covid_xray.config import PreprocessConfig, load_config  # noqa: E402
from covid_xray.data import crop_matching, dedup, near_duplicates  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/default.yaml")
    parser.add_argument("--data", default=str(HERE.parent.parent / "shared" / "datasets"))
    parser.add_argument("--cache-dir", default=".cache/covid-xray")
    parser.add_argument("--out", default=str(HERE / "dedup_recall.json"))
    args = parser.parse_args()
    config = load_config(args.config)
    root = Path(args.data)
    # Copies are found on the original pixels whatever the preprocessing: skip its cost.
    data = config.data.model_copy(
        update={"root": str(root), "cache_dir": args.cache_dir, "preprocess": PreprocessConfig()}
    )

    started = time.perf_counter()
    frame, thumbnails, descriptors = decoded_images(root, data, config.validation.min_side)
    decode_seconds = time.perf_counter() - started
    times = {}
    started = time.perf_counter()
    links = {(i, j): "exact" for i, j in dedup.same_value_pairs(frame["sha256"])}
    links |= {
        (i, j): "hash"
        for i, j, _ in near_duplicates.hamming_pairs(list(frame["phash"]), data.near_duplicate_max_distance)
    }
    times["exact_and_hash"] = time.perf_counter() - started
    started = time.perf_counter()
    links |= {
        (i, j): "thumbnail"
        for i, j, _ in near_duplicates.correlated_pairs(thumbnails, data.near_duplicate_min_correlation)
    }
    times["thumbnail_correlation"] = time.perf_counter() - started
    started = time.perf_counter()
    detail = crop_matching.detail_of(descriptors)
    candidates = list(crop_matching.crop_candidates(detail, crop_matching.CROP_CANDIDATES_PER_IMAGE))
    times["crop_candidates"] = time.perf_counter() - started
    started = time.perf_counter()
    scores = crop_matching.refine_match(detail, candidates)
    times["crop_verification"] = time.perf_counter() - started
    started = time.perf_counter()
    exhaustive = list(crop_matching.crop_candidates_all_pairs(detail, crop_matching.CROP_CANDIDATES_PER_IMAGE))
    reference_seconds = time.perf_counter() - started
    for (i, j, _), score in zip(candidates, scores):
        if score >= data.near_duplicate_min_crop_correlation:
            links.setdefault((min(i, j), max(i, j)), "crop")
    result = {
        "command": "python benchmarks/dedup_recall.py " + " ".join(sys.argv[1:]),
        "images": len(frame),
        "left_out_undecodable": frame.attrs["undecodable"],
        "crop_candidate_pairs": len(candidates),
        "min_crop_correlation": data.near_duplicate_min_crop_correlation,
        "decode_seconds_through_cache": round(decode_seconds, 1),
        "dedup_seconds": {k: round(v, 1) for k, v in times.items()} | {"total": round(sum(times.values()), 1)},
        "crop_candidates_all_pairs_seconds": round(reference_seconds, 1),  # the N² search the index replaces
        "crop_candidate_pairs_all_pairs": len(exhaustive),
        **detection_rates(root, frame, links),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
