"""Small generated chest-X-ray-like images written in the real public layouts of each source."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from covid_xray.config import load_config
from covid_xray.data.cache import ImageCache
from covid_xray.data.decode import sha256_file
from covid_xray.data.stream import Split

ROOT = Path(__file__).resolve().parents[1]
# The default configuration's preprocessing, against acquisition differences: tests of pixels use it, not only the
# tiny config's plain one.
ROBUST = load_config(ROOT / "configs/default.yaml").data.preprocess


def real_images(shared_datasets: Path, per_source: int = 2) -> list[Path]:
    """A few real files of each source (ground-truth manifest: tests only)."""
    chosen: dict[str, list[Path]] = {}
    with open(shared_datasets / "manifest.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if len(chosen.setdefault(row["source"], [])) < per_source:
                chosen[row["source"]].append(shared_datasets / row["path"])
    return [path for paths in chosen.values() for path in paths]


def tiny_split(n: int, seed: int, root: Path, size: int = 32) -> Split:
    """`n` generated pictures as files, through the image cache at `size` px: a split by reference to their pixels."""
    cache, keys = ImageCache(root / "cache", size, 50_000_000, 1), []
    labels = np.arange(n) % 2
    for i, y in enumerate(labels):
        path = root / "files" / f"{seed + i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        xray_like(seed + i, "covid" if y == 0 else "normal").save(path)
        keys.append(sha256_file(path))
        cache.get(path, keys[-1])
    return Split(keys, labels.astype(np.int32), cache.ref())


def xray_like(seed: int, label: str, size: int = 96) -> Image.Image:
    """A grayscale picture with a random texture of its own and a class signal a small model can learn."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    image = 100 + 30 * np.exp(-((x - 0.5) ** 2) / 0.08) + rng.normal(0, 25, (size, size))
    for _ in range(10):  # a texture of its own, so that no two generated pictures look like copies
        cx, cy, r = rng.uniform(0.05, 0.95), rng.uniform(0.05, 0.95), rng.uniform(0.05, 0.2)
        image += rng.uniform(-90, 90) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / r**2)
    if label == "covid":  # bright patches in both lower lung fields
        for cx in (0.3, 0.7):
            image += 50 * np.exp(-((x - cx) ** 2 + (y - 0.7) ** 2) / 0.02)
    if label == "pneumonia":  # one larger dense patch in the right upper lung field
        image += 60 * np.exp(-((x - 0.3) ** 2 + (y - 0.4) ** 2) / 0.03)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), mode="L")


FINDINGS = {"covid": "COVID-19", "normal": "No Finding", "pneumonia": "Pneumonia/Bacterial/Streptococcus"}


def write_ieee8023(
    root: Path,
    n_per_class: int = 12,
    start_seed: int = 0,
    extra_rows: list[dict] | None = None,
    labels: tuple[str, ...] = ("covid", "normal"),
) -> Path:
    """ieee8023 layout: metadata.csv (with the upstream trailing empty column) + images/, `n_per_class` images of each
    of `labels`."""
    folder = root / "ieee8023"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(len(labels) * n_per_class):
        label = labels[i % len(labels)]
        name = f"img-{start_seed + i:04d}.{'png' if i % 3 else 'jpg'}"
        xray_like(start_seed + i, label).save(folder / "images" / name, format="PNG" if i % 3 else "JPEG")
        rows.append(
            {
                "patientid": str(1000 + (start_seed + i) // 2 * 2 + i % 2),
                "finding": FINDINGS[label],
                "view": "PA" if i % 4 else "AP Supine",
                "modality": "X-ray",
                "folder": "images",
                "filename": name,
            }
        )
    rows += extra_rows or []
    columns = ["patientid", "offset", "sex", "age", "finding", "view", "modality", "folder", "filename", ""]
    with open(folder / "metadata.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return folder


def save(image: Image.Image, path: Path, format: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=format or ("JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"))
    return path


def write_csv(path: Path, columns: list[str], rows: list[dict], encoding: str = "utf-8", newline: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(columns)]
    for row in rows:
        cells = [str(row.get(c, "")) for c in columns]
        lines.append(",".join(f'"{c}"' if "," in c else c for c in cells))
    path.write_bytes((newline.join(lines) + newline).encode(encoding))
    return path


def write_actualmed(root: Path, n_per_class: int = 4, seed: int = 500) -> Path:
    """Actualmed layout: CRLF metadata.csv with `imagename`, RGB PNGs, and a row with a blank finding."""
    folder = root / "actualmed"
    rows = []
    for i in range(2 * n_per_class):
        label = "covid" if i % 2 == 0 else "normal"
        name = f"CR.1.2.840.{seed + i}.png"
        save(xray_like(seed + i, label).convert("RGB"), folder / "images" / name)
        rows.append(
            {
                "patientid": f"ANON{seed + i}",
                "finding": "COVID-19" if label == "covid" else "No finding",
                "view": "AP",
                "modality": "X-ray",
                "imagename": name,
            }
        )
    rows.append({"patientid": "ANON999", "finding": "", "view": "AP", "modality": "X-ray", "imagename": "blank.png"})
    save(xray_like(999, "normal"), folder / "images" / "blank.png")
    columns = [
        "patientid",
        "offset",
        "sex",
        "age",
        "finding",
        "survival",
        "temperature",
        "pO2 saturation",
        "view",
        "modality",
        "imagename",
        "artifacts/distortion",
        "notes",
    ]
    write_csv(folder / "metadata.csv", columns, rows, newline="\r\n")
    return folder


def write_figure1(root: Path, seed: int = 600) -> Path:
    """Figure1 layout: cp1252 metadata.csv without a file-name column; images/<patientid>.jpg or .png."""
    folder = root / "figure1"
    rows = [
        {"patientid": "COVID-00001", "finding": "COVID-19", "view": "PA", "notes": "caf\u00e9 \u2013 78\u00b0F"},
        {"patientid": "COVID-00002", "finding": "No finding", "view": "AP"},
        {"patientid": "COVID-00003", "finding": "Pneumonia", "view": "PA"},
    ]
    save(xray_like(seed, "covid"), folder / "images" / "COVID-00001.jpg")
    save(xray_like(seed + 1, "normal"), folder / "images" / "COVID-00002.png")
    # COVID-00003 has no image file.
    write_csv(
        folder / "metadata.csv",
        ["patientid", "offset", "sex", "age", "finding", "view", "modality", "notes"],
        [r | {"modality": "X-ray"} for r in rows],
        encoding="cp1252",
    )
    return folder


def write_darkcovidnet(root: Path, seed: int = 700) -> Path:
    """DarkCovidNet layout: "X-Ray Image DataSet/{Covid-19,No_findings,Pneumonia}", NIH patient ids in file names."""
    base = root / "darkcovidnet" / "X-Ray Image DataSet"
    save(xray_like(seed, "covid").convert("RGBA"), base / "Covid-19" / "covid-a.png")
    save(xray_like(seed + 1, "covid"), base / "Covid-19" / "covid-b.jpeg")
    save(xray_like(seed + 2, "normal"), base / "No_findings" / "00001280_004.png")
    save(xray_like(seed + 3, "normal"), base / "No_findings" / "00001280_005.png")
    save(xray_like(seed + 4, "pneumonia"), base / "Pneumonia" / "00002000_000.png")
    (base / "No_findings" / "Thumbs.db").write_bytes(b"not an image")
    return root / "darkcovidnet"


def write_covid19_image_dataset(root: Path, seed: int = 800) -> Path:
    """Kaggle "Covid-19 Image Dataset": Covid19-dataset/{train,test}/{Covid,Normal,Viral Pneumonia}."""
    base = root / "covid19-image-dataset" / "Covid19-dataset"
    for part_index, part in enumerate(("train", "test")):
        for class_index, folder in enumerate(("Covid", "Normal", "Viral Pneumonia")):
            label = ("covid", "normal", "pneumonia")[class_index]
            save(
                xray_like(seed + 10 * part_index + class_index, label).convert("RGB"), base / part / folder / "01.jpeg"
            )
    return root / "covid19-image-dataset"


def write_kermany(root: Path, seed: int = 900) -> Path:
    """Kermany chest_xray: {train,test,val}/{NORMAL,PNEUMONIA} with patient ids in the file names."""
    base = root / "kermany" / "chest_xray"
    save(xray_like(seed, "normal"), base / "train" / "NORMAL" / "IM-0115-0001.jpeg")
    save(xray_like(seed + 1, "normal"), base / "test" / "NORMAL" / "NORMAL2-IM-1427-0001.jpeg")
    save(xray_like(seed + 2, "pneumonia"), base / "train" / "PNEUMONIA" / "person1_bacteria_1.jpeg")
    save(xray_like(seed + 3, "pneumonia"), base / "val" / "PNEUMONIA" / "person1_virus_6.jpeg")
    return root / "kermany"


def write_radiography(root: Path, seed: int = 950) -> Path:
    """COVID-19 Radiography Database (newer layout): <class>/{images,masks}/ plus metadata .xlsx files."""
    base = root / "radiography" / "COVID-19_Radiography_Dataset"
    for i, (folder, label) in enumerate(
        (("COVID", "covid"), ("Normal", "normal"), ("Lung_Opacity", "pneumonia"), ("Viral Pneumonia", "pneumonia"))
    ):
        save(xray_like(seed + i, label), base / folder / "images" / f"{folder}-1.png")
        save(xray_like(seed + 50 + i, label), base / folder / "masks" / f"{folder}-1.png")
    (base / "COVID.metadata.xlsx").write_bytes(b"PK\x03\x04 (spreadsheet)")
    return root / "radiography"


HANNOVER_COLUMNS = [
    "patient_id",
    "image_id",
    "sex",
    "age",
    "size",
    "weight",
    "admission_offset",
    "icu_admission_offset",
    "icu_release_offset",
    "death_offset",
    "modality",
    "projection",
    "crp_offset",
    "crp_val",
    "d-dimer_offset",
    "d-dimer_val",
    "ldh_offset",
    "ldh_val",
]


def write_hannover(
    root: Path, n_patients: int = 3, images_per_patient: int = 2, seed: int = 1000, extra_rows: list[dict] | None = None
) -> Path:
    """Hannover layout: data.csv (LF, redacted empty columns, lab values) + png/<image_id>.png, all COVID-19."""
    folder = root / "hannover"
    rows = []
    for i in range(n_patients * images_per_patient):
        image_id = f"{seed + i:08x}"
        save(xray_like(seed + i, "covid"), folder / "png" / f"{image_id}.png")
        rows.append(
            {
                "patient_id": f"p{seed + i // images_per_patient:07x}",
                "image_id": image_id,
                "sex": "m",
                "admission_offset": str(-i),
                "modality": "CR" if i % 2 else "DX",
                "projection": "ap" if i % 3 else "pa",
                "crp_offset": "0.0",
                "crp_val": "5.0",
                "ldh_val": "inf",
            }
        )
    write_csv(folder / "data.csv", HANNOVER_COLUMNS, rows + (extra_rows or []))
    return folder


def write_class_folders(root: Path, seed: int = 1100) -> Path:
    """A hospital export, one sub-folder per class, patient ids in the file names: export/<class>/P<id>_<n>.png."""
    folder = root / "export"
    images = [
        ("COVID", "P1000_1.png"),
        ("COVID", "P1000_2.png"),
        ("COVID", "P1001_1.png"),
        ("Healthy", "P1002_1.png"),
        ("Healthy", "P1003_1.png"),
        ("Other", "P1004_1.png"),
    ]
    for i, (class_folder, name) in enumerate(images):
        save(xray_like(seed + i, "covid" if class_folder == "COVID" else "normal"), folder / class_folder / name)
    save(xray_like(seed + 10, "normal").convert("RGB"), folder / "Healthy" / "2024" / "P2000_1.jpg")
    (folder / "Healthy" / "Thumbs.db").write_bytes(b"not an image")
    (folder / "README.txt").write_text("exported 2024-05-01\n")
    return folder


def write_csv_table(root: Path, rows: list[dict], seed: int = 1200, csv_file: str = "labels.csv") -> Path:
    """A hospital export as a table: <folder>/<csv_file> listing images under <folder>/images/.

    Each row's image is written unless the row says `"write": False`."""
    folder = root / "hospital"
    for i, row in enumerate(rows):
        if row.get("write", True):
            save(
                xray_like(seed + i, "covid" if "covid" in row["label"].lower() else "normal"),
                folder / row["path"].replace("\\", "/"),
            )
    write_csv(folder / csv_file, ["path", "label", "patient_id", "view", "modality"], rows)
    return folder


def write_dicom(
    path: Path,
    stored: np.ndarray,
    bits_stored: int = 12,
    photometric: str = "MONOCHROME2",
    modality: str = "DX",
    window: tuple[float, float] | None = None,
    rescale: tuple[float, float] | None = None,
    syntax: str | None = None,
    tags: dict | None = None,
) -> Path:
    """A DICOM file written by pydicom: `stored` (uint16 rows x columns, or frames x rows x columns) as the pixel
    data, with the given bits, photometric interpretation, modality, window (center, width), rescale (slope,
    intercept) and transfer syntax (a compressed one is encoded by pydicom's own encoders)."""
    dx_for_presentation = "1.2.840.10008.5.1.4.1.1.1.1"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = dx_for_presentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID, dataset.SOPInstanceUID = dx_for_presentation, meta.MediaStorageSOPInstanceUID
    dataset.Modality = modality
    dataset.Rows, dataset.Columns = stored.shape[-2:]
    if stored.ndim == 3:
        dataset.NumberOfFrames = stored.shape[0]
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, photometric
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, bits_stored, bits_stored - 1
    dataset.PixelRepresentation = 0
    if window is not None:
        dataset.WindowCenter, dataset.WindowWidth = window
    if rescale is not None:
        dataset.RescaleSlope, dataset.RescaleIntercept = rescale
    for name, value in (tags or {}).items():
        setattr(dataset, name, value)
    dataset.PixelData = stored.astype(np.uint16).tobytes()
    if syntax is not None:
        dataset.compress(syntax, stored.astype(np.uint16))
    dataset.save_as(path, enforce_file_format=True)
    return path


def as_dicom_12bit(png: Path, path: Path, photometric: str = "MONOCHROME1", **options) -> Path:
    """A real 8-bit image as a 12-bit DICOM radiograph: values v*16+8, inverted for MONOCHROME1, with a window over
    the whole 12-bit range, so that a faithful reader gives back the 8-bit picture."""
    values = np.asarray(Image.open(png).convert("L"), dtype=np.uint16) * 16 + 8
    stored = 4095 - values if photometric == "MONOCHROME1" else values
    return write_dicom(path, stored, 12, photometric, window=(2048, 4096), **options)
