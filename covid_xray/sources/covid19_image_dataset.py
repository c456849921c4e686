"""Kaggle "Covid-19 Image Dataset": Covid19-dataset/{train,test}/{Covid,Normal,Viral Pneumonia}/.

No metadata and no patient ids: every image is its own patient, and near-duplicate grouping
(see dedup) keeps copies of one picture together.
"""

from pathlib import Path

from .base import SourceScan, register, require_folder, scan_labelled_folders

FOLDERS = {"Covid": "covid", "Normal": "normal", "Viral Pneumonia": "pneumonia"}


@register("covid19_image_dataset", classes=("covid", "normal", "pneumonia"))
def read_covid19_image_dataset(folder: Path, source: str = "covid19-image-dataset") -> SourceScan:
    scan = SourceScan(source, folder)
    base = folder / "Covid19-dataset"
    require_folder(base)
    for part in ("train", "test"):
        if (base / part).is_dir():
            # File names repeat across class folders (Covid/01.jpeg, Normal/01.jpeg): the id is the whole path.
            scan_labelled_folders(scan, base / part, FOLDERS, lambda p: str(p.relative_to(base).with_suffix("")))
        else:
            scan.drop(f"Covid19-dataset/{part}", "split folder missing")
    return scan
