from pathlib import Path

import numpy as np
import pandas as pd
from fixtures import save, xray_like
from PIL import Image

from covid_xray.config import DataConfig, SourceConfig, ValidationConfig
from covid_xray.dedup import UnionFind, hamming_pairs
from covid_xray.images import sha256_file
from covid_xray.ingest import ingest


def test_hamming_pairs_finds_close_hashes_only():
    assert hamming_pairs(["ffff000000000000", "fffe000000000000", "0000ffffffffffff"], 2) == [(0, 1, 1)]


def test_union_find_joins_transitively():
    groups = UnionFind("abcd")
    groups.union("a", "b")
    groups.union("c", "b")
    assert groups.find("c") == groups.find("a") != groups.find("d")


def _data(root: Path, tmp_path: Path) -> DataConfig:
    return DataConfig(root=str(root), sources=[SourceConfig(reader="darkcovidnet", path="a", name="a"),
                                               SourceConfig(reader="darkcovidnet", path="b", name="b")],
                      cache_dir=str(tmp_path / "cache"), image_size=32)  # fmt: skip


def test_exact_and_reencoded_copies_across_sources_keep_one_and_join_patients(tmp_path: Path):
    root = tmp_path / "raw"
    original = xray_like(10, "covid", size=128)
    save(original, root / "a/X-Ray Image DataSet/Covid-19/00000001_000.png")
    save(xray_like(11, "covid"), root / "a/X-Ray Image DataSet/Covid-19/00000001_001.png")
    save(xray_like(12, "normal"), root / "a/X-Ray Image DataSet/No_findings/00000002_000.png")
    # source b: a byte-identical copy, a resized JPEG re-encoding, and a new picture
    (root / "b/X-Ray Image DataSet/Covid-19").mkdir(parents=True)
    (root / "b/X-Ray Image DataSet/Covid-19/00000009_000.png").write_bytes(
        (root / "a/X-Ray Image DataSet/Covid-19/00000001_000.png").read_bytes())  # fmt: skip
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


def test_real_sources_keep_one_copy_of_each_shared_picture(shared_datasets: Path, tmp_path: Path):
    from covid_xray.config import PreprocessConfig, load_config

    config = load_config("configs/default.yaml")
    # Duplicates are found on the original pixels, whatever the preprocessing: skip its cost here.
    data = config.data.model_copy(update={"root": str(shared_datasets), "cache_dir": str(tmp_path / "cache"),
                                          "preprocess": PreprocessConfig()})  # fmt: skip
    manifest, drops = ingest(data, config.validation)
    assert manifest["sha256"].is_unique
    assert set(manifest["label"]) == {"covid", "normal"}
    # darkcovidnet's Covid-19 folder holds 56 byte-identical copies of ieee8023 images (PROVENANCE.md): all dropped
    ieee = {sha256_file(p) for p in (shared_datasets / "ieee8023/images").iterdir()}
    copies = {f"Covid-19/{p.name}" for p in (shared_datasets / "darkcovidnet/X-Ray Image DataSet/Covid-19").iterdir()
              if sha256_file(p) in ieee}  # fmt: skip
    assert len(copies) == 56
    duplicates = drops[drops["reason"].str.contains("duplicate")]
    assert copies <= set(duplicates.loc[duplicates["source"] == "darkcovidnet", "item"])
    assert (drops["reason"].str.startswith("near duplicate") & (drops["source"] == "covid19-image-dataset")).sum() >= 40
    labels = pd.read_csv(shared_datasets / "manifest.csv").set_index("path")["label"]
    kept = manifest["path"].map(lambda p: str(Path(p).relative_to(shared_datasets)))
    assert (kept.map(labels).to_numpy() == manifest["label"].to_numpy()).all()
    assert np.isin(["covid", "normal"], manifest["label"]).all()
