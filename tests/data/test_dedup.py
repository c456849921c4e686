from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures import save, xray_like
from known_copies import copy_pairs, decoded_images, detection_rates, links_of
from PIL import Image

from covid_xray.config import DataConfig, SourceConfig, ValidationConfig
from covid_xray.data.decode import sha256_file
from covid_xray.data.dedup import deduplicate
from covid_xray.data.ingest import ingest, read_sources
from covid_xray.data.near_duplicates import hamming_pairs
from covid_xray.data.split import crossing_groups, patient_split
from covid_xray.evaluation.loso import fold_rows, loso_folds


def test_hamming_pairs_finds_close_hashes_only():
    assert hamming_pairs(["ffff000000000000", "fffe000000000000", "0000ffffffffffff"], 2) == [(0, 1, 1)]


@pytest.mark.parametrize("max_distance", [0, 2, 5])
def test_band_buckets_find_every_pair_the_all_pairs_comparison_finds(max_distance: int):
    rng = np.random.default_rng(max_distance)
    values = rng.integers(0, 2**63, 3000, dtype=np.int64).astype(np.uint64) * np.uint64(2) + np.uint64(1)
    # planted near copies: 0..max_distance+2 bits flipped, so some are just inside and some just outside the limit
    copies = values[:300].copy()
    for row, flips in zip(range(300), rng.integers(0, max_distance + 3, 300)):
        for bit in rng.choice(64, flips, replace=False):
            copies[row] ^= np.uint64(1) << np.uint64(bit)
    values = np.r_[values, copies]
    distance = np.bitwise_count(values[:, None] ^ values[None, :])
    i, j = np.nonzero(np.triu(distance <= max_distance, 1))
    expected = [(int(a), int(b), int(distance[a, b])) for a, b in zip(i, j)]
    assert len(expected) > 100
    assert hamming_pairs([f"{v:016x}" for v in values], max_distance) == expected


def test_indexed_thumbnail_search_finds_every_correlated_pair():
    from covid_xray.data.near_duplicates import correlated_pairs

    rng = np.random.default_rng(0)
    base = rng.standard_normal((1500, 1024)).astype(np.float32) @ rng.standard_normal((1024, 1024)).astype(np.float32)
    near = base[:200] + rng.uniform(0.05, 0.5, (200, 1)).astype(np.float32) * base[:200].std() * rng.standard_normal(
        (200, 1024)
    ).astype(np.float32)
    thumbnails = np.r_[base, near]
    thumbnails -= thumbnails.mean(1, keepdims=True)
    thumbnails /= np.linalg.norm(thumbnails, axis=1, keepdims=True)
    correlation = thumbnails @ thumbnails.T
    i, j = np.nonzero(np.triu(correlation >= 0.95, 1))
    found = [(a, b) for a, b, _ in correlated_pairs(thumbnails, 0.95, exhaustive_max=0)]
    assert 20 < len(found) < 200 and found == list(zip(i.tolist(), j.tolist()))


def test_a_cluster_of_copies_larger_than_the_neighbours_asked_for_is_found_whole():
    from covid_xray.data.near_duplicates import THUMBNAIL_NEIGHBOURS, correlated_pairs

    rng = np.random.default_rng(2)
    base = rng.standard_normal((3000, 1024)).astype(np.float32)
    copies = base[0] + 0.05 * rng.standard_normal((5 * THUMBNAIL_NEIGHBOURS, 1024)).astype(np.float32)
    thumbnails = np.r_[base, copies]  # one picture and 80 near copies of it: 3,240 pairs among 81 images
    thumbnails -= thumbnails.mean(1, keepdims=True)
    thumbnails /= np.linalg.norm(thumbnails, axis=1, keepdims=True)
    i, j = np.nonzero(np.triu(thumbnails @ thumbnails.T >= 0.95, 1))
    found = [(a, b) for a, b, _ in correlated_pairs(thumbnails, 0.95, exhaustive_max=0)]
    assert len(found) == 81 * 80 // 2 and found == list(zip(i.tolist(), j.tolist()))


def test_a_chain_of_copies_is_one_group_named_after_its_smallest_patient_id():
    """c copies b and b copies a: one picture kept, the three patients one group, named "p:a" whichever order the
    copies were joined in (the name feeds the split, so it must not depend on the order)."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal(1024).astype(np.float32)
    other = rng.standard_normal(1024).astype(np.float32)
    thumbnails = np.stack([base, base + 0.01, base + 0.02, other])
    thumbnails -= thumbnails.mean(1, keepdims=True)
    thumbnails /= np.linalg.norm(thumbnails, axis=1, keepdims=True)
    manifest = pd.DataFrame(
        {
            "source": ["s"] * 4,
            "path": ["1.png", "2.png", "3.png", "4.png"],
            "label": ["covid"] * 4,
            "patient_id": ["p:c", "p:b", "p:a", "p:d"],
            "sha256": list("wxyz"),
            "phash": ["0" * 16, "f" * 16, "0f" * 8, "f0" * 8],
        }
    )
    descriptors = np.zeros((4, 96, 96), np.uint8)
    kept, drops = deduplicate(manifest, thumbnails, ["s"], 0, 0.99, descriptors, 1.0)
    assert list(kept["path"]) == ["1.png", "4.png"] and len(drops) == 2
    assert list(kept["group_id"]) == ["p:a", "p:d"]


def _data(root: Path, tmp_path: Path) -> DataConfig:
    return DataConfig(
        root=str(root),
        sources=[
            SourceConfig(reader="darkcovidnet", path="a", name="a"),
            SourceConfig(reader="darkcovidnet", path="b", name="b"),
        ],
        cache_dir=str(tmp_path / "cache"),
        image_size=32,
    )


def test_exact_and_reencoded_copies_across_sources_keep_one_and_join_patients(tmp_path: Path):
    root = tmp_path / "raw"
    original = xray_like(10, "covid", size=128)
    save(original, root / "a/X-Ray Image DataSet/Covid-19/00000001_000.png")
    save(xray_like(11, "covid"), root / "a/X-Ray Image DataSet/Covid-19/00000001_001.png")
    save(xray_like(12, "normal"), root / "a/X-Ray Image DataSet/No_findings/00000002_000.png")
    # source b: a byte-identical copy, a resized JPEG re-encoding, and a new picture
    (root / "b/X-Ray Image DataSet/Covid-19").mkdir(parents=True)
    (root / "b/X-Ray Image DataSet/Covid-19/00000009_000.png").write_bytes(
        (root / "a/X-Ray Image DataSet/Covid-19/00000001_000.png").read_bytes()
    )
    save(original.resize((100, 100), Image.Resampling.LANCZOS), root / "b/X-Ray Image DataSet/Covid-19/copy.jpg")
    save(xray_like(13, "normal"), root / "b/X-Ray Image DataSet/No_findings/00000003_000.png")
    save(xray_like(14, "normal"), root / "b/X-Ray Image DataSet/No_findings/00000009_001.png")
    manifest, drops = ingest(_data(root, tmp_path), ValidationConfig(min_side=32))
    assert len(manifest) == 5 and manifest["sha256"].is_unique
    duplicate_drops = drops[drops["reason"].str.contains("duplicate")]
    assert sorted(duplicate_drops["item"]) == ["Covid-19/00000009_000.png", "Covid-19/copy.jpg"]
    assert duplicate_drops["reason"].str.startswith("exact duplicate of a:").sum() == 1
    assert duplicate_drops["reason"].str.startswith("near duplicate").sum() == 1
    # b's patient 00000009 shared a picture with a's patient 00000001: one group, so one split
    group = manifest.groupby("patient_id")["group_id"].agg(set).map(lambda groups: groups.pop())
    assert group["b:nih-00000009"] == group["a:nih-00000001"]
    assert group["b:nih-00000003"] != group["a:nih-00000001"]


@pytest.fixture(scope="module")
def real_run(shared_datasets: Path, tmp_path_factory):
    """The default config's sources on the shared data, ingested once for this module's tests."""
    from covid_xray.config import PreprocessConfig, load_config

    config = load_config("configs/default.yaml")
    # Duplicates are found on the original pixels, whatever the preprocessing: skip its cost here.
    data = config.data.model_copy(
        update={
            "root": str(shared_datasets),
            "preprocess": PreprocessConfig(),
            "cache_dir": str(tmp_path_factory.mktemp("cache")),
        }
    )
    config = config.model_copy(update={"data": data})
    manifest, drops = ingest(data, config.validation)
    return config, manifest, drops


def test_real_sources_keep_one_copy_of_each_shared_picture(shared_datasets: Path, real_run):
    _, manifest, drops = real_run
    assert manifest["sha256"].is_unique
    assert set(manifest["label"]) == {"covid", "normal", "pneumonia"}  # every finding the sources label
    # darkcovidnet's Covid-19 folder holds 56 byte-identical copies of ieee8023 images (PROVENANCE.md): all dropped
    ieee = {sha256_file(p) for p in (shared_datasets / "ieee8023/images").iterdir()}
    copies = {
        f"Covid-19/{p.name}"
        for p in (shared_datasets / "darkcovidnet/X-Ray Image DataSet/Covid-19").iterdir()
        if sha256_file(p) in ieee
    }
    assert len(copies) == 56
    duplicates = drops[drops["reason"].str.contains("duplicate")]
    assert copies <= set(duplicates.loc[duplicates["source"] == "darkcovidnet", "item"])
    assert (drops["reason"].str.startswith("near duplicate") & (drops["source"] == "covid19-image-dataset")).sum() >= 40
    labels = pd.read_csv(shared_datasets / "manifest.csv").set_index("path")["label"]
    kept = manifest["path"].map(lambda p: str(Path(p).relative_to(shared_datasets)))
    assert (kept.map(labels).to_numpy() == manifest["label"].to_numpy()).all()
    assert np.isin(["covid", "normal"], manifest["label"]).all()


def test_real_copies_are_found_and_look_alike_pictures_are_not(shared_datasets: Path, real_run):
    """Recall on the 124 known re-cropped / re-encoded copies, false positives on known different pictures."""
    config, _, _ = real_run
    frame, thumbnails, descriptors = decoded_images(shared_datasets, config.data, config.validation.min_side)
    rates = detection_rates(shared_datasets, frame, links_of(frame, thumbnails, descriptors, config.data))
    assert rates["recall"]["all"]["pairs"] == 124
    assert rates["recall"]["all"]["rate"] >= 0.95, rates["missed_copies"]
    assert (
        rates["recall"]["darkcovidnet-ieee8023"]["rate"] >= 0.95
        and rates["recall"]["hannover-ieee8023"]["rate"] >= 0.95
    )
    different = rates["false_positive_rate"]
    assert (
        different["nih-different-patients"]["pairs"] > 80_000
        and different["hannover-same-patient-other-day"]["pairs"] > 600
    )
    assert all(different[kind]["rate"] <= 0.01 for kind in different), rates["false_positives"]


def test_indexed_searches_find_what_comparing_all_pairs_finds_on_the_real_data(shared_datasets: Path, real_run):
    """Band buckets, the projected radius search and the HNSW window index keep every copy the exhaustive searches
    find, on every image of the shared data: the same links, so the same clusters, kept images and drop reasons."""
    from covid_xray.data import crop_matching, near_duplicates

    config, _, _ = real_run
    frame, thumbnails, descriptors = decoded_images(shared_datasets, config.data, config.validation.min_side)
    values = np.array([int(h, 16) for h in frame["phash"]], dtype=np.uint64)
    distance = np.bitwise_count(values[:, None] ^ values[None, :])
    i, j = np.nonzero(np.triu(distance <= config.data.near_duplicate_max_distance, 1))
    assert near_duplicates.hamming_pairs(list(frame["phash"]), config.data.near_duplicate_max_distance) == [
        (int(a), int(b), int(distance[a, b])) for a, b in zip(i, j)
    ]
    i, j = np.nonzero(np.triu(thumbnails @ thumbnails.T >= config.data.near_duplicate_min_correlation, 1))
    indexed = near_duplicates.correlated_pairs(thumbnails, config.data.near_duplicate_min_correlation, exhaustive_max=0)
    found = [(a, b) for a, b, _ in indexed]
    assert len(found) > 100 and found == list(zip(i.tolist(), j.tolist()))
    detail = crop_matching.detail_of(descriptors)

    def copies(candidates):
        candidates = list(candidates)
        scores = crop_matching.refine_match(detail, candidates)
        return {
            (min(a, b), max(a, b))
            for (a, b, _), score in zip(candidates, scores)
            if score >= config.data.near_duplicate_min_crop_correlation
        }

    exhaustive = copies(crop_matching.crop_candidates_all_pairs(detail, crop_matching.CROP_CANDIDATES_PER_IMAGE))
    assert (
        len(exhaustive) > 200
        and copies(crop_matching.crop_candidates(detail, crop_matching.CROP_CANDIDATES_PER_IMAGE)) == exhaustive
    )


def _ground_truth_in_run(shared_datasets: Path, config, manifest: pd.DataFrame) -> pd.DataFrame:
    """The known copy pairs whose two files are both read by the configured sources, by content hash and patient."""
    candidates, _ = read_sources(config.data)
    candidates["sha256"] = candidates["path"].map(sha256_file)
    patient = candidates.drop_duplicates("sha256").set_index("sha256")["patient_id"]
    pairs = copy_pairs(shared_datasets)
    for side in ("a", "b"):
        pairs[f"sha_{side}"] = [sha256_file(shared_datasets / p) for p in pairs[side]]
    pairs = pairs[pairs["sha_a"].isin(patient.index) & pairs["sha_b"].isin(patient.index)].copy()
    pairs["patient_a"], pairs["patient_b"] = pairs["sha_a"].map(patient), pairs["sha_b"].map(patient)
    return pairs


def test_real_copies_join_patients_and_never_cross_a_split_or_fold(shared_datasets: Path, real_run):
    config, manifest, drops = real_run
    pairs = _ground_truth_in_run(shared_datasets, config, manifest)
    assert len(pairs) >= 63  # darkcovidnet/ieee8023 always; hannover/ieee8023 too when a hannover source is configured
    if any(s.path == "hannover" for s in config.data.sources):
        assert (pairs["kind"] == "hannover-ieee8023").sum() == 61
    kept = set(manifest["sha256"])
    both_kept = pairs["sha_a"].isin(kept) & pairs["sha_b"].isin(kept)
    # Every known copy is dropped: by its pixels, or (the one re-cropped beyond what they tell) by darkcovidnet's
    # documented ieee8023 origin
    assert not both_kept.any(), pairs.loc[both_kept, ["a", "b"]].to_string()
    assert (
        drops["reason"].str.startswith("re-published copy (documented origin ieee8023:").sum() == 1
    )  # the one pixels miss
    # The kept copy's group is the group of every other image of the dropped copy's patient, in whichever source
    group_of_image = manifest.set_index("sha256")["group_id"]
    followed = 0
    for pair in pairs[~both_kept].itertuples():
        if pair.sha_a not in kept and pair.sha_b not in kept:
            continue  # both dropped as copies of a third image
        kept_sha, dropped_patient = (pair.sha_a, pair.patient_b) if pair.sha_a in kept else (pair.sha_b, pair.patient_a)
        groups = set(manifest.loc[manifest["patient_id"] == dropped_patient, "group_id"])
        assert groups <= {group_of_image[kept_sha]}, (pair.a, pair.b, groups)
        followed += bool(groups)
    if any(s.path == "hannover" for s in config.data.sources):
        assert followed > 0  # Hannover patients with other images than the ones ieee8023 copied

    def leaks(test: pd.DataFrame, train: pd.DataFrame) -> set[str]:
        test_sha, train_sha = set(test["sha256"]), set(train["sha256"])
        crossing = pairs[
            (pairs["sha_a"].isin(test_sha) & pairs["sha_b"].isin(train_sha))
            | (pairs["sha_b"].isin(test_sha) & pairs["sha_a"].isin(train_sha))
        ]
        return {f"{a} ~ {b}" for a, b in zip(crossing["a"], crossing["b"])}

    split = patient_split(manifest, config.split)
    assert crossing_groups(split) == []
    assert leaks(split[split["split"] == "test"], split[split["split"] != "test"]) == set()
    folds = loso_folds(manifest, config.evaluation.loso_min_images)
    assert len(folds) == len(config.data.sources)
    excluded = {}
    for source in folds:
        test, train, excluded[source] = fold_rows(manifest, source)
        assert not set(test["group_id"]) & set(train["group_id"]), source
        assert leaks(test, train) == set(), source
    if "hannover" in folds:
        # Hannover patients whose pictures ieee8023 copied: each fold trains on neither source's images of them
        assert excluded["hannover"] > 0 and excluded["ieee8023"] > 0


def test_a_recropped_and_squeezed_copy_is_found_and_a_different_picture_is_not():
    import io

    from PIL import ImageFilter

    from covid_xray.data.crop_matching import cropped_pairs
    from covid_xray.data.descriptors import crop_descriptor

    def radiograph(seed: int, label: str) -> Image.Image:  # without the pixel noise that no radiograph has
        return xray_like(seed, label, size=384).filter(ImageFilter.GaussianBlur(2))

    original = radiograph(20, "covid")
    # another source's copy: 12% cut from the top and 8% from the right, squeezed to a square, re-encoded as JPEG
    crop = original.crop((0, 46, 353, 384)).resize((256, 256), Image.Resampling.LANCZOS)
    encoded = io.BytesIO()
    crop.save(encoded, format="JPEG", quality=85)
    pictures = [original, Image.open(encoded), radiograph(21, "covid"), radiograph(22, "normal")]
    descriptors = np.stack([crop_descriptor(np.asarray(p.convert("L"))) for p in pictures])
    found = list(cropped_pairs(descriptors, 0.9, per_image=3))
    assert [(i, j) for i, j, _ in found] == [(0, 1)]


def test_small_sets_compare_all_pairs_and_find_the_same_thumbnail_pairs_as_the_index():
    from covid_xray.data.near_duplicates import correlated_pairs

    rng = np.random.default_rng(1)
    base = rng.standard_normal((300, 256)).astype(np.float32)
    thumbnails = np.r_[base, base[:40] + 0.2 * rng.standard_normal((40, 256)).astype(np.float32)]
    thumbnails -= thumbnails.mean(1, keepdims=True)
    thumbnails /= np.linalg.norm(thumbnails, axis=1, keepdims=True)
    everything = list(correlated_pairs(thumbnails, 0.9))  # 340 images: under EXHAUSTIVE_MAX, one matrix product
    indexed = list(correlated_pairs(thumbnails, 0.9, exhaustive_max=0))
    assert len(everything) == 40 and [p[:2] for p in everything] == [p[:2] for p in indexed]
    assert np.allclose([p[2] for p in everything], [p[2] for p in indexed], atol=1e-5)
