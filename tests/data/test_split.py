import numpy as np
import pandas as pd

from covid_xray.config import SplitConfig
from covid_xray.data.descriptors import thumbnail
from covid_xray.data.split import crossing_groups, patient_split


def manifest(n_groups: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        for k in range(rng.integers(1, 4)):
            rows.append(
                {
                    "source": f"s{g % 3}",
                    "label": "covid" if g % 2 else "normal",
                    "group_id": f"g{g}",
                    "sha256": f"{g}-{k}",
                }
            )
    return pd.DataFrame(rows)


def test_no_group_crosses_splits_and_fractions_are_close():
    frame = patient_split(manifest(), SplitConfig(seed=3, val_fraction=0.15, test_fraction=0.2))
    assert crossing_groups(frame) == []
    shares = frame["split"].value_counts(normalize=True)
    assert abs(shares["test"] - 0.2) < 0.08 and abs(shares["val"] - 0.15) < 0.08
    assert set(frame.loc[frame["split"] == "test", "label"]) == {"covid", "normal"}


def test_split_is_reproducible_with_its_seed():
    config = SplitConfig(seed=7)
    assert patient_split(manifest(), config)["split"].tolist() == patient_split(manifest(), config)["split"].tolist()
    assert (
        patient_split(manifest(), config)["split"].tolist()
        != patient_split(manifest(), SplitConfig(seed=8))["split"].tolist()
    )


def test_crossing_groups_detects_leaks():
    frame = pd.DataFrame({"group_id": ["a", "a", "b"], "split": ["train", "test", "val"]})
    assert crossing_groups(frame) == ["a"]


def test_real_data_split_has_no_patient_or_near_duplicate_across_splits(shared_datasets, tmp_path):
    from covid_xray.config import PreprocessConfig, load_config
    from covid_xray.data.dataset import image_cache, prepare
    from covid_xray.data.ingest import ingest

    config = load_config("configs/default.yaml")
    config = config.model_copy(
        update={
            "data": config.data.model_copy(
                update={
                    "root": str(shared_datasets),
                    "cache_dir": str(tmp_path / "cache"),
                    "preprocess": PreprocessConfig(),
                }
            )
        }
    )  # plain pixels: the thumbnails compare originals
    manifest_, _ = ingest(config.data, config.validation)
    split = prepare(manifest_, config).manifest
    assert crossing_groups(split) == []
    assert split.groupby("patient_id")["split"].nunique().max() == 1
    vectors = np.stack([thumbnail(p) for p in image_cache(config).stack(list(split["sha256"]))])
    correlation = vectors @ vectors.T
    different_split = split["split"].to_numpy()[:, None] != split["split"].to_numpy()[None, :]
    assert correlation[different_split].max() < config.data.near_duplicate_min_correlation
