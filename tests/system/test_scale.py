"""The scale benchmark (benchmarks/scale.py) end to end at N = 1,000, the size the issue asks of CI (the 10,000 and
100,000 runs are benchmark runs, in benchmarks/scale.json)."""

import json
import sys
from pathlib import Path

import numpy as np

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))


def test_phantoms_are_distinct_chest_like_pictures():
    from phantoms import phantom

    from covid_xray.data.near_duplicates import hamming_pairs

    pictures = [phantom(i) for i in range(40)]
    assert {label for _, label in pictures} == {"covid", "normal"}
    arrays = [np.asarray(p, np.float32) for p, _ in pictures]
    assert all(a.shape == (256, 256) and a.std() > 30 for a in arrays)
    # the same anatomy is never drawn twice: thumbnails of different phantoms are far from the 0.95 duplicate limit
    import imagehash

    small = np.stack([np.asarray(p.resize((32, 32)), np.float32).ravel() for p, _ in pictures])
    small -= small.mean(1, keepdims=True)
    small /= np.linalg.norm(small, axis=1, keepdims=True)
    correlation = small @ small.T
    assert correlation[np.triu_indices(40, 1)].max() < 0.9
    assert hamming_pairs([str(imagehash.phash(p)) for p, _ in pictures], 2) == []


def test_phantoms_vary_where_perceptual_hashes_look():
    """pHash keeps the lowest frequencies: a fixed layout leaves its bits constant and distinct phantoms collide at
    large N (about 20 chance pairs at distance <= 2 in 10,000 before the generator varied position and exposure).
    Over 300 phantoms at most 4 of the 64 bits may be (nearly) constant; the DC bit always is."""
    import imagehash
    from phantoms import phantom

    hashes = np.array([imagehash.phash(phantom(i)[0]).hash.ravel() for i in range(300)])
    share = hashes.mean(0)
    assert ((share < 0.05) | (share > 0.95)).sum() <= 4, np.sort(share)


def test_scale_benchmark_times_every_stage_and_finds_no_duplicates_among_phantoms(tmp_path: Path):
    from scale import STAGES, main

    n = 1000
    result = main(["--n", str(n), "--work", str(tmp_path / "work"), "--out", str(tmp_path / "scale.json")])
    written = json.loads((tmp_path / "scale.json").read_text())
    assert written["runs"] == json.loads(json.dumps(result["runs"]))
    (run,) = written["runs"]
    assert run["n"] == n and set(run["stages"]) == set(STAGES)
    for name in STAGES:
        stage = run["stages"][name]
        assert stage["seconds"] > 0 and 0 < stage["peak_rss_gb"] < 6 and stage["load_average"] >= 0, name
    assert run["stages"]["ingest"]["images"] == n and run["stages"]["ingest"]["drops"] == 0
    assert run["stages"]["dedup"]["duplicate_drops"] == 0, run["duplicate_examples"]
    assert run["stages"]["split_validation"]["failed"] == []
    assert run["stages"]["cnn_epoch"]["images"] + run["stages"]["evaluation"]["images"] < n
    assert (tmp_path / "scale.png").stat().st_size > 10_000
