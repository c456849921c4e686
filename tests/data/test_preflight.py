"""The pre-flight before ZenML starts: each problem is one PreflightError naming the key or the source, and a source
that has good images beside bad ones passes, its good images going on to ingest (the one pre-flight decoded comes
from the cache)."""

from pathlib import Path

import pytest
import yaml
from fixtures import save, write_csv_table, write_ieee8023, xray_like

from covid_xray.config import load_config, parse_config
from covid_xray.data.ingest import ingest
from covid_xray.data.preflight import PreflightError, preflight, train_share
from covid_xray.data.split import patient_split

TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"


def config_for(root: Path, sources: list[dict] | None = None, **sections):
    raw = yaml.safe_load(TINY.read_text())
    raw["data"] |= {"root": str(root), "cache_dir": str(root / "cache")}
    if sources is not None:
        raw["data"]["sources"] = sources
    for section, values in sections.items():
        raw[section] = raw.get(section, {}) | values if isinstance(values, dict) else values
    return parse_config(raw, "test.yaml")


@pytest.fixture
def ieee(tmp_path) -> Path:
    write_ieee8023(tmp_path, n_per_class=8)
    return tmp_path


def test_good_data_passes_and_returns_the_listed_images(ieee):
    listed = preflight(config_for(ieee))
    assert sorted(listed["label"].value_counts().items()) == [("covid", 8), ("normal", 8)]


def test_cache_dir_that_is_a_file_or_under_a_file_is_named(ieee):
    (ieee / "file").write_text("x")
    with pytest.raises(PreflightError, match=rf"^data\.cache_dir: {ieee / 'file'} is a file, not a folder$"):
        preflight(config_for(ieee, data={"cache_dir": str(ieee / "file")}))
    with pytest.raises(PreflightError, match=r"^data\.cache_dir: cannot write in .*file/sub \(Not a directory\)$"):
        preflight(config_for(ieee, data={"cache_dir": str(ieee / "file" / "sub")}))


def test_missing_weights_file_is_named_with_the_model(ieee):
    model = {"name": "vgg-own", "kind": "vgg16", "weights": str(ieee / "none.weights.h5"), "epochs": 1}
    with pytest.raises(PreflightError, match=r"^models\.0\.weights \(vgg-own\): file not found: .*none\.weights\.h5"):
        preflight(config_for(ieee, models=[model]))


def test_all_corrupt_images_of_a_class_name_the_source_and_the_reason(ieee):
    for path in (ieee / "ieee8023" / "images").iterdir():
        if int(path.stem.split("-")[1]) % 2 == 1:  # every normal image
            path.write_bytes(b"not an image")
    with pytest.raises(
        PreflightError,
        match=r"^source 'ieee8023': none of its 8 'normal' image\(s\) is usable "
        r"\(8 not a readable image\)$",
    ):
        preflight(config_for(ieee))


def test_a_source_with_some_bad_images_passes_and_its_good_images_are_ingested(ieee):
    images = sorted((ieee / "ieee8023" / "images").iterdir())
    images[0].write_bytes(b"")  # the first covid image: pre-flight must try the next one
    images[1].write_bytes(b"junk")  # the first normal image
    config = config_for(ieee)
    preflight(config)
    manifest, drops = ingest(config.data, config.validation)
    assert len(manifest) == 14 and sorted(drops["reason"]) == [
        "empty file (0 bytes)",
        "not a readable image (UnidentifiedImageError)",
    ]


def test_header_only_and_empty_metadata_and_empty_class_folders_name_the_source(tmp_path):
    write_csv_table(tmp_path, [])  # labels.csv with its header and no row
    with pytest.raises(
        PreflightError,
        match=r"^source 'csv' \(.*hospital\): lists no images at all \(empty metadata "
        r"table or class folders\?\)$",
    ):
        preflight(config_for(tmp_path, [{"reader": "csv", "path": "hospital"}]))
    (tmp_path / "hospital" / "labels.csv").write_bytes(b"")
    with pytest.raises(PreflightError, match=r"^source 'csv': .*labels\.csv: empty metadata table \(0 bytes"):
        preflight(config_for(tmp_path, [{"reader": "csv", "path": "hospital"}]))
    for name in ("covid", "normal"):
        (tmp_path / "export" / name).mkdir(parents=True)
    with pytest.raises(PreflightError, match=r"^source 'folder' \(.*export\): lists no images at all"):
        preflight(config_for(tmp_path, [{"reader": "folder", "path": "export"}]))


def test_a_class_the_source_should_provide_but_lists_no_image_of_is_named(tmp_path):
    save(xray_like(1, "covid"), tmp_path / "export" / "covid" / "a.png")
    save(xray_like(2, "covid"), tmp_path / "export" / "normal" / "a.txt")
    with pytest.raises(
        PreflightError,
        match=r"^source 'folder' \(.*\): no 'normal' image listed; 1 item\(s\) dropped: "
        r"1 not an image file name$",
    ):
        preflight(config_for(tmp_path, [{"reader": "folder", "path": "export"}]))


def test_split_fractions_that_leave_too_few_training_images_are_refused(ieee):
    with pytest.raises(
        PreflightError,
        match=r"^split\.val_fraction 0\.45 and split\.test_fraction 0\.45 leave about 2 "
        r"training images of class 'covid' \(of 8 listed\), fewer than "
        r"split\.min_train_images_per_class 4$",
    ):
        preflight(config_for(ieee, split={"val_fraction": 0.45, "test_fraction": 0.45}))


@pytest.mark.parametrize("val, test", [(0.15, 0.2), (0.2, 0.25), (0.45, 0.45), (0.3, 0.2)])
def test_train_share_is_what_the_patient_split_keeps(ieee, val, test):
    config = config_for(ieee, split={"val_fraction": val, "test_fraction": test, "min_train_images_per_class": 1})
    frame = preflight(config).assign(group_id=lambda f: f["patient_id"])
    split = patient_split(frame.reset_index(drop=True), config.split)
    assert (split["split"] == "train").mean() == pytest.approx(train_share(config), abs=0.1)


def test_the_real_sources_pass_with_the_default_config(shared_datasets, tmp_path):
    config = load_config("configs/default.yaml")
    data = config.data.model_copy(update={"root": str(shared_datasets), "cache_dir": str(tmp_path / "cache")})
    listed = preflight(config.model_copy(update={"data": data}))
    assert set(listed["source"]) == {"ieee8023", "hannover", "actualmed", "darkcovidnet", "covid19-image-dataset"}
    # one image per (source, class) decoded into the run's cache, not the sources' every image
    assert 5 <= len(list((tmp_path / "cache").rglob("*.npz"))) <= 12
