"""Ground truth for duplicate detection on the shared data, from its documented layout (PROVENANCE.md), not
manifest.csv.

Copies: darkcovidnet's Covid-19 files that carry an ieee8023 file name but other bytes (re-cropped, rescaled or
re-encoded there), and the Hannover images that ieee8023 imported as `<image_id>.jpg`. Known-different pictures that
look alike: images of different NIH patients in darkcovidnet's No_findings folder, and images of one Hannover patient
taken on different days. Used by tests/test_dedup.py and benchmarks/dedup_recall.py.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import DisjointSet

from covid_xray.config import DataConfig
from covid_xray.data.cache import ImageCache
from covid_xray.data.decode import ImageError, sha256_file
from covid_xray.data.dedup import duplicate_links
from covid_xray.data.ingest import read_sources

DARK_COVID = "darkcovidnet/X-Ray Image DataSet/Covid-19"
DARK_NORMAL = "darkcovidnet/X-Ray Image DataSet/No_findings"


def copy_pairs(root: Path) -> pd.DataFrame:
    """Known copies (a, b, kind): paths relative to `root`."""
    rows = []
    for path in sorted((root / DARK_COVID).iterdir()):
        twin = root / "ieee8023/images" / path.name
        if twin.is_file() and sha256_file(path) != sha256_file(twin):
            rows.append((f"{DARK_COVID}/{path.name}", f"ieee8023/images/{path.name}", "darkcovidnet-ieee8023"))
    for image_id in pd.read_csv(root / "hannover/data.csv", dtype=str)["image_id"]:
        if (root / f"ieee8023/images/{image_id}.jpg").is_file():
            rows.append((f"hannover/png/{image_id}.png", f"ieee8023/images/{image_id}.jpg", "hannover-ieee8023"))
    return pd.DataFrame(rows, columns=["a", "b", "kind"])


def different_pairs(root: Path) -> pd.DataFrame:
    """Known different pictures (a, b, kind) that look alike: different NIH patients; one patient on different days."""
    rows = []
    normals = sorted(p.name for p in (root / DARK_NORMAL).iterdir())
    for a, b in itertools.combinations(normals, 2):
        if a[:8] != b[:8]:
            rows.append((f"{DARK_NORMAL}/{a}", f"{DARK_NORMAL}/{b}", "nih-different-patients"))
    hannover = pd.read_csv(root / "hannover/data.csv", dtype={"patient_id": str, "image_id": str})
    for _, images in hannover.groupby("patient_id"):
        for (_, a), (_, b) in itertools.combinations(images.iterrows(), 2):
            if a["admission_offset"] != b["admission_offset"]:
                rows.append(
                    (
                        f"hannover/png/{a['image_id']}.png",
                        f"hannover/png/{b['image_id']}.png",
                        "hannover-same-patient-other-day",
                    )
                )
    return pd.DataFrame(rows, columns=["a", "b", "kind"])


def decoded_images(root: Path, data: DataConfig, min_side: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Every image of the configured sources (and hannover/png, when no source reads it), as ingest decodes them.

    Files that ingest would drop as unusable are left out here too; `frame.attrs["undecodable"]` lists them.
    """
    candidates, _ = read_sources(data)
    paths = [Path(p) for p in candidates["path"]]
    if not any("hannover" in p.parts for p in paths):
        paths += sorted((root / "hannover/png").iterdir())
    cache = ImageCache.for_data(data, min_side)
    rows, thumbnails, descriptors, undecodable = [], [], [], []
    for path in paths:
        sha = sha256_file(path)
        try:
            image = cache.get(path, sha)
        except ImageError as error:
            undecodable.append(f"{path}: {error}")
            continue
        rows.append({"path": str(path), "sha256": sha, "phash": image.phash})
        thumbnails.append(image.thumbnail)
        descriptors.append(image.crop_descriptor)
    frame = pd.DataFrame(rows)
    frame.attrs["undecodable"] = undecodable
    return frame, np.stack(thumbnails), np.stack(descriptors)


def detection_rates(root: Path, frame: pd.DataFrame, links: dict) -> dict:
    """Recall on the known copies and false-positive rate on the known different pairs, by kind and overall.

    A pair counts as detected when its two images end in one cluster of copies (the way deduplicate keeps one).
    """
    images = DisjointSet(range(len(frame)))
    for i, j in links:
        images.merge(i, j)
    row = {sha: i for i, sha in reversed(list(enumerate(frame["sha256"])))}
    shas = {}

    def cluster(relative: str) -> int:
        if relative not in shas:
            shas[relative] = sha256_file(root / relative)
        return images[row[shas[relative]]]

    result = {}
    for name, pairs in (("recall", copy_pairs(root)), ("false_positive_rate", different_pairs(root))):
        same = np.array([cluster(a) == cluster(b) for a, b in zip(pairs["a"], pairs["b"])])
        result[name] = {"all": {"pairs": len(pairs), "rate": float(same.mean()), "detected": int(same.sum())}}
        for kind, mask in pairs.groupby("kind").indices.items():
            result[name][kind] = {
                "pairs": len(mask),
                "rate": float(same[mask].mean()),
                "detected": int(same[mask].sum()),
            }
        if name == "recall":
            result["missed_copies"] = [
                f"{a} ~ {b}" for (a, b), hit in zip(pairs[["a", "b"]].to_numpy(), same) if not hit
            ]
        else:
            result["false_positives"] = [f"{a} ~ {b}" for (a, b), hit in zip(pairs[["a", "b"]].to_numpy(), same) if hit]
    return result


def links_of(frame: pd.DataFrame, thumbnails: np.ndarray, descriptors: np.ndarray, data: DataConfig) -> dict:
    return duplicate_links(
        frame,
        thumbnails,
        data.near_duplicate_max_distance,
        data.near_duplicate_min_correlation,
        descriptors,
        data.near_duplicate_min_crop_correlation,
    )
