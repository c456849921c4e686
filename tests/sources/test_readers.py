"""Every reader on generated fixtures of its public layout, with the mess real downloads have."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures import (
    save,
    write_actualmed,
    write_class_folders,
    write_covid19_image_dataset,
    write_csv,
    write_csv_table,
    write_darkcovidnet,
    write_dicom,
    write_figure1,
    write_hannover,
    write_ieee8023,
    write_kermany,
    write_radiography,
    xray_like,
)

from covid_xray.sources import READERS, SourceError


def reasons(scan) -> list[str]:
    return [d["reason"] for d in scan.drops]


def test_ieee8023_keeps_frontal_xrays_and_reports_every_other_row(tmp_path: Path):
    extra = [
        {
            "patientid": "9",
            "finding": "COVID-19",
            "view": "Axial",
            "modality": "CT",
            "folder": "images",
            "filename": "ct.jpg",
        },
        {
            "patientid": "9",
            "finding": "COVID-19",
            "view": "L",
            "modality": "X-ray",
            "folder": "images",
            "filename": "lat.jpg",
        },
        {
            "patientid": "9",
            "finding": "COVID-19",
            "view": "PA",
            "modality": "X-ray",
            "folder": "images",
            "filename": "gone.png",
        },
        {
            "patientid": "9",
            "finding": "",
            "view": "PA",
            "modality": "X-ray",
            "folder": "images",
            "filename": "img-0000.jpg",
        },
        {
            "patientid": "9",
            "finding": "Tuberculosis",
            "view": "PA",
            "modality": "X-ray",
            "folder": "images",
            "filename": "img-0001.png",
        },
        {
            "patientid": "9",
            "finding": "COVID-19",
            "view": "PA",
            "modality": "X-ray",
            "folder": "images",
            "filename": "../../../etc/passwd",
        },
        {
            "patientid": "9",
            "finding": "COVID-19",
            "view": "PA",
            "modality": "X-ray",
            "folder": "images",
            "filename": "/etc/passwd",
        },
        {
            "patientid": "10",
            "finding": "Pneumonia/Viral/SARS",
            "view": "AP",
            "modality": "X-ray",
            "folder": "images",
            "filename": "img-0002.png",
        },
    ]
    folder = write_ieee8023(tmp_path, n_per_class=3, extra_rows=extra)
    scan = READERS["ieee8023"](folder, "ieee8023")
    rows, drops = scan.frames()
    assert len(rows) == 6 + 1  # 6 generated rows plus the SARS row, as pneumonia
    assert rows.loc[rows["finding"] == "Pneumonia/Viral/SARS", "label"].item() == "pneumonia"
    assert sorted(rows["label"].unique()) == ["covid", "normal", "pneumonia"]
    assert all(p.startswith("ieee8023:") for p in rows["patient_id"])
    assert reasons(scan) == [
        "modality 'CT' is not a chest X-ray",
        "view 'L' is not frontal",
        "image file missing: images/gone.png",
        "blank finding",
        "unknown finding 'Tuberculosis'",
        "unsafe file name 'images/../../../etc/passwd' points outside the source folder",
        "unsafe file name '/etc/passwd' points outside the source folder",
    ]
    assert drops["item"].iloc[0] == "metadata.csv row 7 (ct.jpg)"


def test_ieee8023_reads_cp1252_metadata_with_bom_free_trailing_column(tmp_path: Path):
    folder = write_ieee8023(tmp_path, n_per_class=1)
    text = (folder / "metadata.csv").read_text(encoding="utf-8").replace("No Finding", "No Finding")
    lines = text.splitlines()
    lines[1] = lines[1] + "caf\u00e9 \u2013"  # non-UTF-8 bytes once encoded as cp1252
    (folder / "metadata.csv").write_bytes("\n".join(lines).encode("cp1252"))
    rows, _ = READERS["ieee8023"](folder, "ieee8023").frames()
    assert len(rows) == 2


def test_ieee8023_utf8_bom_header_is_read(tmp_path: Path):
    folder = write_ieee8023(tmp_path, n_per_class=1)
    data = (folder / "metadata.csv").read_bytes()
    (folder / "metadata.csv").write_bytes(b"\xef\xbb\xbf" + data)
    rows, _ = READERS["ieee8023"](folder, "ieee8023").frames()
    assert len(rows) == 2


def test_missing_source_folder_and_missing_metadata_are_clear_errors(tmp_path: Path):
    with pytest.raises(SourceError, match="source folder not found"):
        READERS["ieee8023"](tmp_path / "nope", "ieee8023")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="metadata file not found"):
        READERS["actualmed"](tmp_path / "empty", "actualmed")


@pytest.mark.parametrize(
    "reader, metadata, header, missing",
    [
        ("ieee8023", "metadata.csv", "patientid,finding\n1,COVID-19\n", r"\['view', 'modality', 'filename'\]"),
        ("hannover", "data.csv", "patient_id,image_id,sex\na,b,m\n", r"\['modality', 'projection'\]"),
    ],
)
def test_metadata_without_required_columns_names_them(tmp_path: Path, reader, metadata, header, missing):
    folder = tmp_path / reader
    folder.mkdir()
    (folder / metadata).write_text(header)
    with pytest.raises(SourceError, match=r"missing column\(s\) " + missing):
        READERS[reader](folder, reader)


def test_actualmed_crlf_imagename_and_blank_finding(tmp_path: Path):
    folder = write_actualmed(tmp_path, n_per_class=3)
    assert b"\r\n" in (folder / "metadata.csv").read_bytes()
    scan = READERS["actualmed"](folder, "actualmed")
    rows, _ = scan.frames()
    assert rows["label"].value_counts().to_dict() == {"covid": 3, "normal": 3}
    assert reasons(scan) == ["blank finding"]


def test_figure1_cp1252_and_image_named_by_patient(tmp_path: Path):
    folder = write_figure1(tmp_path)
    scan = READERS["figure1"](folder, "figure1")
    rows, _ = scan.frames()
    assert dict(zip(rows["patient_id"], rows["label"])) == {
        "figure1:COVID-00001": "covid",
        "figure1:COVID-00002": "normal",
    }
    assert rows["path"].str.endswith(("COVID-00001.jpg", "COVID-00002.png")).all()
    assert reasons(scan) == ["image file missing: images/COVID-00003.jpg"]


def test_darkcovidnet_labels_from_folders_and_nih_patient_ids(tmp_path: Path):
    scan = READERS["darkcovidnet"](write_darkcovidnet(tmp_path), "darkcovidnet")
    rows, _ = scan.frames()
    by_name = {
        Path(p).name: (label, patient) for p, label, patient in zip(rows["path"], rows["label"], rows["patient_id"])
    }
    assert by_name["00001280_004.png"] == ("normal", "darkcovidnet:nih-00001280")
    assert by_name["00001280_005.png"][1] == "darkcovidnet:nih-00001280"
    assert by_name["covid-a.png"] == ("covid", "darkcovidnet:image-covid-a")
    assert by_name["00002000_000.png"][0] == "pneumonia"
    assert reasons(scan) == ["not an image file name"]


def test_covid19_image_dataset_reads_train_and_test(tmp_path: Path):
    rows, _ = READERS["covid19_image_dataset"](write_covid19_image_dataset(tmp_path), "c19").frames()
    assert rows["label"].value_counts().to_dict() == {"covid": 2, "normal": 2, "pneumonia": 2}
    assert rows["patient_id"].nunique() == 6


def test_kermany_patient_ids_from_file_names(tmp_path: Path):
    rows, _ = READERS["kermany"](write_kermany(tmp_path), "kermany").frames()
    assert sorted(rows["patient_id"]) == ["kermany:im-0115", "kermany:im-1427", "kermany:person1", "kermany:person1"]
    assert rows["label"].value_counts().to_dict() == {"normal": 2, "pneumonia": 2}


def test_radiography_skips_masks_and_lung_opacity_with_reasons(tmp_path: Path):
    scan = READERS["radiography"](write_radiography(tmp_path), "radiography")
    rows, _ = scan.frames()
    assert sorted(rows["label"]) == ["covid", "normal", "pneumonia"]
    assert reasons(scan).count("segmentation mask, not a radiograph") == 4
    assert "class folder 'Lung_Opacity' is not a project class" in reasons(scan)


def test_empty_class_folders_are_reported(tmp_path: Path):
    (tmp_path / "darkcovidnet" / "X-Ray Image DataSet").mkdir(parents=True)
    scan = READERS["darkcovidnet"](tmp_path / "darkcovidnet", "darkcovidnet")
    assert scan.rows == [] and "none of the class folders" in reasons(scan)[0]


def test_hannover_keeps_frontal_radiographs_as_covid_and_reports_every_other_row(tmp_path: Path):
    extra = [
        {"patient_id": "p9", "image_id": "lateral", "modality": "CR", "projection": "ll"},
        {"patient_id": "p9", "image_id": "scan", "modality": "CT", "projection": "ap"},
        {"patient_id": "p9", "image_id": "gone", "modality": "DX", "projection": "pa"},
        {"patient_id": "p9", "image_id": "", "modality": "DX", "projection": "pa"},
        {"patient_id": "", "image_id": "nobody", "modality": "DX", "projection": "pa"},
        {"patient_id": "p9", "image_id": "../../../etc/passwd", "modality": "DX", "projection": "pa"},
    ]
    folder = write_hannover(tmp_path, n_patients=3, images_per_patient=2, extra_rows=extra)
    for name in ("lateral", "scan", "nobody"):
        save(xray_like(len(name), "covid"), folder / "png" / f"{name}.png")
    rows, drops = READERS["hannover"](folder, "hannover").frames()
    assert len(rows) == 6 and set(rows["label"]) == {"covid"} and set(rows["finding"]) == {"COVID-19"}
    assert rows["patient_id"].value_counts().tolist() == [2, 2, 2]
    assert rows["patient_id"].str.startswith("hannover:p").all()
    assert rows["view"].tolist() == ["PA", "AP", "AP", "PA", "AP", "AP"]  # the project's spelling of 'pa' and 'ap'
    assert set(rows["modality"]) == {"X-ray"}  # CR and DX are both radiographs
    assert drops["reason"].tolist() == [
        "view 'll' is not frontal",
        "modality 'CT' is not a chest X-ray",
        "image file missing: png/gone.png",
        "blank image_id",
        "blank patient_id",
        "unsafe file name 'png/../../../etc/passwd.png' points outside the source folder",
    ]
    assert drops["item"].tolist()[:4] == [
        "data.csv row 7 (lateral)",
        "data.csv row 8 (scan)",
        "data.csv row 9 (gone)",
        "data.csv row 10 (no image_id)",
    ]


EXPORT_LABELS = {"COVID": "covid", "Healthy": "normal", "Other": None}


def test_folder_reader_maps_class_folders_and_takes_patients_from_file_names(tmp_path: Path):
    folder = write_class_folders(tmp_path)
    scan = READERS["folder"](folder, "hospital", labels=EXPORT_LABELS, patient_pattern=r"^(P\d+)_")
    rows, drops = scan.frames()
    patients = dict(zip(rows["path"].map(lambda p: Path(p).relative_to(folder).as_posix()), rows["patient_id"]))
    assert patients == {
        "COVID/P1000_1.png": "hospital:P1000",
        "COVID/P1000_2.png": "hospital:P1000",
        "COVID/P1001_1.png": "hospital:P1001",
        "Healthy/2024/P2000_1.jpg": "hospital:P2000",
        "Healthy/P1002_1.png": "hospital:P1002",
        "Healthy/P1003_1.png": "hospital:P1003",
    }
    assert rows["label"].value_counts().to_dict() == {"covid": 3, "normal": 3}
    assert set(rows["finding"]) == {"COVID", "Healthy"} and set(rows["view"]) == {"unknown"}
    assert dict(zip(drops["item"], drops["reason"])) == {
        "README.txt": "not inside a class folder",
        "Healthy/Thumbs.db": "not an image file name",
        "Other/P1004_1.png": "class folder 'Other' is not a project class",
    }


def test_folder_reader_drops_files_the_patient_pattern_does_not_match(tmp_path: Path):
    folder = write_class_folders(tmp_path)
    save(xray_like(1, "covid"), folder / "COVID" / "scan-0001.png")
    save(xray_like(2, "covid"), folder / "Unsorted" / "P1005_1.png")
    scan = READERS["folder"](folder, "hospital", labels=EXPORT_LABELS, patient_pattern=r"^(?P<patient>P\d+)_")
    rows, drops = scan.frames()
    reasons = dict(zip(drops["item"], drops["reason"]))
    assert reasons["COVID/scan-0001.png"] == r"file name does not match patient_pattern '^(?P<patient>P\\d+)_'"
    assert reasons["Unsorted/P1005_1.png"] == "class folder 'Unsorted' is not in labels ['covid', 'healthy', 'other']"
    assert len(rows) == 6 and "hospital:P1000" in set(rows["patient_id"])


def test_folder_reader_without_options_uses_class_names_and_one_patient_per_image(tmp_path: Path):
    for i, relative in enumerate(["covid/01.png", "Normal/01.png", "NORMAL/sub/02.png", "pneumonia/01.png"]):
        save(xray_like(i, "normal"), tmp_path / "mine" / relative)
    rows, drops = READERS["folder"](tmp_path / "mine", "mine").frames()
    assert rows["label"].tolist() == ["normal", "normal", "covid", "pneumonia"]  # sorted folders: NORMAL, Normal, ...
    assert rows["patient_id"].tolist() == [
        "mine:image-NORMAL/sub/02",
        "mine:image-Normal/01",
        "mine:image-covid/01",
        "mine:image-pneumonia/01",
    ]
    assert drops.empty
    (tmp_path / "flat").mkdir()
    save(xray_like(9, "covid"), tmp_path / "flat" / "a.png")
    assert [d["reason"] for d in READERS["folder"](tmp_path / "flat", "flat").drops] == [
        "not inside a class folder",
        "no class folders (expected sub-folders named ['covid', 'normal', 'pneumonia'])",
    ]


CSV_ROWS = [
    {"path": "images/a.png", "label": "Positive", "patient_id": "MRN-1", "view": "pa", "modality": "CR"},
    {"path": "images/b.png", "label": "positive", "patient_id": "MRN-1", "view": "AP", "modality": "DX"},
    {"path": "images\\c.png", "label": "Negative", "patient_id": "MRN-2", "view": "", "modality": ""},
    {"path": "images/d.png", "label": "Negative", "patient_id": "", "view": "PA", "modality": "X-ray"},
    {"path": "images/e.png", "label": "Tuberculosis", "patient_id": "MRN-3"},
    {"path": "images/f.png", "label": "Excluded", "patient_id": "MRN-3"},
    {"path": "images/gone.png", "label": "Negative", "patient_id": "MRN-4", "write": False},
    {"path": "../outside.png", "label": "Negative", "patient_id": "MRN-5", "write": False},
    {"path": "/etc/passwd", "label": "Negative", "patient_id": "MRN-5", "write": False},
    {"path": "images/lat.png", "label": "Negative", "patient_id": "MRN-6", "view": "LL"},
    {"path": "images/ct.png", "label": "Negative", "patient_id": "MRN-6", "modality": "CT"},
    {"path": "", "label": "Negative", "patient_id": "MRN-7", "write": False},
    {"path": "images/nolabel.png", "label": "", "patient_id": "MRN-7"},
]
CSV_LABELS = {"positive": "covid", "negative": "normal", "excluded": None}


def test_csv_reader_reads_paths_labels_patients_and_reports_every_bad_row(tmp_path: Path):
    folder = write_csv_table(tmp_path, CSV_ROWS)
    save(xray_like(99, "normal"), tmp_path / "outside.png")  # exists, but outside the source folder
    rows, drops = READERS["csv"](folder, "hospital", labels=CSV_LABELS).frames()
    assert rows["path"].map(lambda p: Path(p).relative_to(folder).as_posix()).tolist() == [
        "images/a.png",
        "images/b.png",
        "images/c.png",
        "images/d.png",
    ]
    assert rows["label"].tolist() == ["covid", "covid", "normal", "normal"]
    assert rows["patient_id"].tolist() == [
        "hospital:MRN-1",
        "hospital:MRN-1",
        "hospital:MRN-2",
        "hospital:image-images/d.png",
    ]
    assert rows["view"].tolist() == ["PA", "AP", "unknown", "PA"] and set(rows["modality"]) == {"X-ray"}
    assert dict(zip(drops["item"], drops["reason"])) == {
        "labels.csv row 5 (images/e.png)": "unknown label 'Tuberculosis' (labels: excluded, negative, positive)",
        "labels.csv row 6 (images/f.png)": "label 'Excluded' is not a project class",
        "labels.csv row 7 (images/gone.png)": "image file missing: images/gone.png",
        "labels.csv row 8 (../outside.png)": "unsafe file name '../outside.png' points outside the source folder",
        "labels.csv row 9 (/etc/passwd)": "unsafe file name '/etc/passwd' points outside the source folder",
        "labels.csv row 10 (images/lat.png)": "view 'LL' is not frontal",
        "labels.csv row 11 (images/ct.png)": "modality 'CT' is not a chest X-ray",
        "labels.csv row 12 (no path)": "blank path",
        "labels.csv row 13 (images/nolabel.png)": "blank label",
    }


def test_csv_reader_without_labels_takes_class_names_and_refuses_a_table_outside_its_folder(tmp_path: Path):
    rows = [
        {"path": "x/1.png", "label": "COVID"},
        {"path": "x/2.png", "label": "normal"},
        {"path": "x/3.png", "label": "Positive"},
    ]
    folder = write_csv_table(tmp_path, rows, csv_file="export/list.csv")
    scan = READERS["csv"](folder, "own", csv_file="export/list.csv")
    assert [r["label"] for r in scan.rows] == ["covid", "normal"]
    assert reasons(scan) == ["unknown label 'Positive' (labels: covid, normal, pneumonia)"]
    with pytest.raises(SourceError, match="csv_file '../labels.csv' points outside the source folder"):
        READERS["csv"](folder, "own", csv_file="../labels.csv")
    with pytest.raises(SourceError, match=r"metadata file not found: .*labels.csv"):
        READERS["csv"](folder, "own")
    (folder / "labels.csv").write_text("file,class\nx/1.png,covid\n")
    with pytest.raises(SourceError, match=r"missing column\(s\) \['path', 'label'\]"):
        READERS["csv"](folder, "own")


NOT_FRONTAL_XRAYS = {  # CT and lateral views kept in the shared ieee8023 copy on purpose (PROVENANCE.md)
    "jkms-35-e79-g001-l-d.jpg",
    "jkms-35-e79-g001-l-e.jpg",
    "1-s2.0-S0929664620300449-gr3_lrg-a.jpg",
    "nejmoa2001191_f1-L.jpeg",
    "nejmoa2001191_f3-L.jpeg",
    "nejmoa2001191_f5-L.jpeg",
    "covid-19-pneumonia-15-L.jpg",
    "covid-19-pneumonia-7-L.jpg",
}


REAL_SOURCES = [
    ("ieee8023", "ieee8023"),
    ("hannover", "hannover"),
    ("actualmed", "actualmed"),
    ("darkcovidnet", "darkcovidnet"),
    ("covid19_image_dataset", "covid19-image-dataset"),
]


def read_real_sources(root: Path) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    return {folder: READERS[reader](root / folder, folder).frames() for reader, folder in REAL_SOURCES}


def found_under(root: Path, rows: pd.DataFrame) -> set[tuple[str, str, str]]:
    """(path relative to root, label, patient) of each row: fails when a path is not under root as given."""
    return set(zip(rows["path"].map(lambda p: str(Path(p).relative_to(root))), rows["label"], rows["patient_id"]))


def test_real_shared_sources_match_their_ground_truth(shared_datasets: Path):
    """On the real downloads, each reader finds exactly the images the ground-truth manifest lists (less CT/lateral)."""
    truth = pd.read_csv(shared_datasets / "manifest.csv")
    truth = truth[~truth["path"].map(lambda p: Path(p).name).isin(NOT_FRONTAL_XRAYS)]
    for folder, (rows, _) in read_real_sources(shared_datasets).items():
        expected = truth[truth["source"] == folder]
        assert {(p, label) for p, label, _ in found_under(shared_datasets, rows)} == set(
            zip(expected["path"], expected["label"])
        ), folder
    rows, drops = READERS["ieee8023"](shared_datasets / "ieee8023", "ieee8023").frames()
    assert len(rows) - rows["path"].nunique() == 4  # four files listed under two patient ids each
    assert drops["reason"].str.startswith("image file missing").sum() == 3
    assert (drops["reason"] == "modality 'CT' is not a chest X-ray").sum() == 3
    assert (drops["reason"] == "view 'L' is not frontal").sum() == 5


def test_real_hannover_is_167_frontal_covid_radiographs_of_50_patients(shared_datasets: Path):
    rows, drops = READERS["hannover"](shared_datasets / "hannover", "hannover").frames()
    truth = pd.read_csv(shared_datasets / "manifest.csv").query("source == 'hannover'")
    assert len(rows) == 167 and drops.empty
    assert set(rows["patient_id"]) == set(truth["patient_id"]) and rows["patient_id"].nunique() == 50
    assert rows["view"].value_counts().to_dict() == {"AP": 135, "PA": 32}
    assert set(rows["modality"]) == {"X-ray"} and set(rows["label"]) == {"covid"}


def test_real_data_read_through_a_symbolic_link_keeps_the_link_in_every_path(shared_datasets: Path, tmp_path: Path):
    """A data root reached through a link (../shared as a link, data/raw linked to a store) reads the same rows,
    with paths under the link as given, so that they compare with paths built from the configured root."""
    link = tmp_path / "linked-datasets"
    link.symlink_to(shared_datasets, target_is_directory=True)
    direct, linked = read_real_sources(shared_datasets), read_real_sources(link)
    for folder, (rows, drops) in linked.items():
        assert rows["path"].str.startswith(f"{link}/").all(), folder
        assert found_under(link, rows) == found_under(shared_datasets, direct[folder][0]), folder
        assert drops.equals(direct[folder][1]), folder
    assert sum(len(rows) for rows, _ in linked.values()) == 1594 - len(NOT_FRONTAL_XRAYS) + 4  # 4 listed twice


def test_class_folders_read_a_dicom_exports_patient_view_and_modality_from_its_header(tmp_path: Path):
    """A hospital's DICOM export in class folders: PatientID groups a patient's images for the split, a lateral view
    and a CT are dropped with what their header says, and the frontal radiographs keep their view."""
    pixels = (np.arange(96 * 96).reshape(96, 96) % 4096).astype(np.uint16)
    for name, tags in {
        "covid/first.dcm": {"PatientID": "P1", "ViewPosition": "PA", "PatientSex": "F", "PatientAge": "045Y"},
        "covid/second.dcm": {"PatientID": "P1", "ViewPosition": "AP"},
        "covid/side.dcm": {"PatientID": "P1", "ViewPosition": "LL"},
        "normal/scan.dcm": {"PatientID": "P2", "Modality": "CT"},
        "normal/plain.dcm": {"PatientID": "P3"},
    }.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        modality = tags.pop("Modality", "DX")
        write_dicom(tmp_path / name, pixels, modality=modality, tags=tags)
    rows, drops = READERS["folder"](tmp_path, source="site").frames()
    kept = rows.set_index(rows["path"].map(lambda p: Path(p).name))
    assert sorted(kept.index) == ["first.dcm", "plain.dcm", "second.dcm"]
    assert kept.loc["first.dcm", "patient_id"] == kept.loc["second.dcm", "patient_id"] == "site:P1"
    assert list(kept.loc[["first.dcm", "second.dcm", "plain.dcm"], "view"]) == ["PA", "AP", "unknown"]
    assert set(kept["modality"]) == {"X-ray"}
    assert (kept.loc["first.dcm", "sex"], kept.loc["first.dcm", "age"]) == ("F", 45.0)
    assert kept.loc["plain.dcm", "sex"] == "unknown" and np.isnan(kept.loc["plain.dcm", "age"])
    assert dict(zip(drops["item"], drops["reason"], strict=True)) == {
        "covid/side.dcm": "not a frontal view (DICOM ViewPosition 'LL')",
        "normal/scan.dcm": "not an X-ray (DICOM Modality 'CT')",
    }


def test_a_csv_list_of_dicom_files_takes_blank_columns_from_each_header_and_its_own_values_first(tmp_path: Path):
    """A site's CSV that names only path and label: patient, view, sex and age come from the DICOM headers, a lateral
    view and a CT are dropped with what the header says; a column the table fills wins over the header."""
    pixels = (np.arange(96 * 96).reshape(96, 96) % 4096).astype(np.uint16)
    (tmp_path / "dicom").mkdir()
    headers = {
        "a.dcm": ("DX", {"PatientID": "P1", "ViewPosition": "PA", "PatientSex": "M", "PatientAge": "061Y"}),
        "b.dcm": ("DX", {"PatientID": "P1", "ViewPosition": "AP"}),
        "side.dcm": ("DX", {"PatientID": "P1", "ViewPosition": "LL"}),
        "ct.dcm": ("CT", {"PatientID": "P2"}),
        "listed.dcm": ("DX", {"PatientID": "P3", "ViewPosition": "LL", "PatientSex": "F"}),
    }
    for name, (modality, tags) in headers.items():
        write_dicom(tmp_path / "dicom" / name, pixels, modality=modality, tags=tags)
    rows = [{"path": f"dicom/{name}", "label": "covid", "view": "", "patient_id": ""} for name in headers]
    rows[-1] |= {"view": "PA", "patient_id": "MRN-9"}  # the table's own values
    write_csv(tmp_path / "site.csv", ["path", "label", "view", "patient_id"], rows)
    kept, drops = READERS["csv"](tmp_path, "site", csv_file="site.csv").frames()
    kept = kept.set_index(kept["path"].map(lambda p: Path(p).name))
    assert sorted(kept.index) == ["a.dcm", "b.dcm", "listed.dcm"]
    assert list(kept.loc[["a.dcm", "b.dcm", "listed.dcm"], "patient_id"]) == ["site:P1", "site:P1", "site:MRN-9"]
    assert list(kept.loc[["a.dcm", "b.dcm", "listed.dcm"], "view"]) == ["PA", "AP", "PA"]
    assert (kept.loc["a.dcm", "sex"], kept.loc["a.dcm", "age"], kept.loc["listed.dcm", "sex"]) == ("M", 61.0, "F")
    assert dict(zip(drops["item"], drops["reason"], strict=True)) == {
        "site.csv row 3 (dicom/side.dcm)": "DICOM ViewPosition 'LL' is not frontal",
        "site.csv row 4 (dicom/ct.dcm)": "DICOM Modality 'CT' is not a chest X-ray",
    }


def test_the_real_ieee8023_and_hannover_tables_give_sex_and_age(shared_datasets: Path):
    """The subgroup columns come from the sources' own metadata: most real rows have them."""
    for reader, folder in (("ieee8023", "ieee8023"), ("hannover", "hannover")):
        rows, _ = READERS[reader](shared_datasets / folder).frames()
        assert set(rows["sex"]) <= {"F", "M", "other", "unknown"}
        assert (rows["sex"] != "unknown").mean() > 0.5, reader
        known = rows["age"].dropna()
        assert ((known >= 0) & (known <= 130)).all()
        assert len(known) > 0.3 * len(rows) or reader == "hannover", (reader, len(known), len(rows))
