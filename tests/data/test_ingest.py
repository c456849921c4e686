"""Reading the configured sources: the default config's five real sources, and a user's own export from YAML."""

from pathlib import Path

import pandas as pd
from fixtures import write_class_folders, write_csv_table

from covid_xray.config import load_config
from covid_xray.data.ingest import ingest, read_sources

NOT_FRONTAL = 8  # CT and lateral images kept in the shared ieee8023 copy (tests/sources/test_readers.py)


def test_default_config_reads_the_five_real_sources(shared_datasets: Path):
    data = load_config("configs/default.yaml").data.model_copy(update={"root": str(shared_datasets)})
    assert [s.label for s in data.sources] == [
        "ieee8023",
        "hannover",
        "actualmed",
        "darkcovidnet",
        "covid19-image-dataset",
    ]
    rows, drops = read_sources(data)
    truth = pd.read_csv(shared_datasets / "manifest.csv")["source"].value_counts().to_dict()
    found = rows["source"].value_counts().to_dict()
    assert found == truth | {"ieee8023": truth["ieee8023"] - NOT_FRONTAL + 4}  # four files listed twice
    assert found["hannover"] == 167 and set(rows.loc[rows["source"] == "hannover", "label"]) == {"covid"}
    assert not drops["reason"].eq("no usable images in source").any()


FOLDER_EXAMPLE = """
data:
  root: {root}
  cache_dir: {root}/cache
  image_size: 32
  sources:
    - reader: folder
      path: export                       # export/<class folder>/<image>
      name: hospital-a
      labels: {{COVID: covid, Healthy: normal, Other: null}}   # class folder -> project class; null: not used
      patient_pattern: '^(P\\d+)_'       # P1000_2.png is patient P1000
    - reader: csv
      path: hospital                     # hospital/labels.csv lists images inside hospital/
      name: hospital-b
      csv_file: labels.csv
      labels: {{positive: covid, negative: normal}}
models: [{{name: cnn, kind: cnn}}]
validation: {{min_side: 32}}
"""


def test_own_exports_from_yaml_are_ingested_with_patients_and_drops(tmp_path: Path):
    write_class_folders(tmp_path)
    write_csv_table(
        tmp_path,
        [
            {"path": "images/1.png", "label": "Positive", "patient_id": "MRN-1", "view": "PA", "modality": "CR"},
            {"path": "images/2.png", "label": "Positive", "patient_id": "MRN-1", "view": "AP", "modality": "CR"},
            {"path": "images/3.png", "label": "Negative", "patient_id": "MRN-2"},
            {"path": "images/4.png", "label": "Negative"},
            {"path": "images/5.png", "label": "Unclear", "patient_id": "MRN-3"},
        ],
    )
    (tmp_path / "own.yaml").write_text(FOLDER_EXAMPLE.format(root=tmp_path))
    config = load_config(tmp_path / "own.yaml")
    manifest, drops = ingest(config.data, config.validation)
    assert manifest.groupby(["source", "label"]).size().to_dict() == {
        ("hospital-a", "covid"): 3,
        ("hospital-a", "normal"): 3,
        ("hospital-b", "covid"): 2,
        ("hospital-b", "normal"): 2,
    }
    assert manifest.loc[manifest["source"] == "hospital-b", "patient_id"].tolist() == [
        "hospital-b:MRN-1",
        "hospital-b:MRN-1",
        "hospital-b:MRN-2",
        "hospital-b:image-images/4.png",
    ]
    assert manifest["group_id"].nunique() == 8  # P1000 (2 images), P1001, P1002, P1003, P2000; MRN-1 (2), MRN-2, 4.png
    assert drops.groupby("source").size().to_dict() == {"hospital-a": 3, "hospital-b": 1}
    assert drops.loc[drops["source"] == "hospital-b", "reason"].tolist() == [
        "unknown label 'Unclear' (labels: negative, positive)"
    ]


def test_parallel_ingest_gives_the_serial_result_and_cache(tmp_path: Path):
    """Decoding over several processes: the same manifest in the same order, the same drops with their reasons, and
    the same cached pixels and duplicate descriptors as one process, on the real default preprocessing."""
    import io

    import numpy as np
    from fixtures import save, xray_like

    from covid_xray.data.cache import ImageCache

    write_class_folders(tmp_path)
    for i in range(24):  # enough files that every worker gets several chunks
        save(
            xray_like(1300 + i, "covid" if i % 2 else "normal", size=160),
            tmp_path / "export" / ("COVID" if i % 2 else "Healthy") / f"P3{i:03d}_1.png",
        )
    (tmp_path / "export/COVID/P4000_1.png").write_bytes(b"")  # empty file: a counted drop
    buffer = io.BytesIO()
    xray_like(1400, "covid", size=160).save(buffer, format="PNG")
    (tmp_path / "export/COVID/P4001_1.png").write_bytes(buffer.getvalue()[:500])  # truncated: a counted drop
    (tmp_path / "export/COVID/P3000_9.png").write_bytes((tmp_path / "export/Healthy/P3000_1.png").read_bytes())
    (tmp_path / "own.yaml").write_text(
        FOLDER_EXAMPLE.format(root=tmp_path).replace(
            "    - reader: csv\n      path: hospital                     "
            "# hospital/labels.csv lists images inside hospital/\n"
            "      name: hospital-b\n      csv_file: labels.csv\n      labels: {positive: covid, negative: normal}\n",
            "",
        )
    )
    config = load_config(tmp_path / "own.yaml")
    preprocess = load_config("configs/default.yaml").data.preprocess
    results = {}
    for workers in (1, 3):
        data = config.data.model_copy(
            update={
                "workers": workers,
                "cache_dir": str(tmp_path / f"cache{workers}"),
                "preprocess": preprocess,
                "image_size": 64,
            }
        )
        results[workers] = ingest(data, config.validation), ImageCache.for_data(data, config.validation.min_side)
    (serial, serial_drops), serial_cache = results[1]
    (parallel, parallel_drops), parallel_cache = results[3]
    pd.testing.assert_frame_equal(serial.drop(columns="cache_key"), parallel.drop(columns="cache_key"))
    pd.testing.assert_frame_equal(serial_drops, parallel_drops)
    assert len(serial) == 30 and serial_drops["reason"].str.contains("empty file|corrupt or truncated").sum() == 2
    assert serial_drops["reason"].str.startswith("exact duplicate").sum() == 1
    files = sorted(p.relative_to(serial_cache.folder) for p in serial_cache.folder.rglob("*.npz"))
    assert files == sorted(p.relative_to(parallel_cache.folder) for p in parallel_cache.folder.rglob("*.npz"))
    assert len(files) == len(serial)  # every decodable content once (the byte-identical copy shares its key)
    for file in files:
        with np.load(serial_cache.folder / file) as one, np.load(parallel_cache.folder / file) as other:
            assert all(np.array_equal(one[key], other[key]) for key in one.files)
