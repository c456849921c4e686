"""Kermany et al. chest_xray: {train,test,val}/{NORMAL,PNEUMONIA}/ (pediatric, Guangzhou).

Patient ids are in the file names: person<N>_bacteria_<k>.jpeg, IM-<N>-<k>.jpeg, NORMAL2-IM-<N>-<k>.jpeg.
"""

import re
from pathlib import Path

from .base import SourceScan, register, require_folder, scan_labelled_folders

FOLDERS = {"NORMAL": "normal", "PNEUMONIA": "pneumonia"}
PATIENT = re.compile(r"(person\d+|IM-\d+)", re.IGNORECASE)


def patient_of(path: Path) -> str:
    match = PATIENT.search(path.stem)
    return match.group(1).lower() if match else f"image-{path.stem}"


@register("kermany", classes=("normal", "pneumonia"))
def read_kermany(folder: Path, source: str = "kermany") -> SourceScan:
    scan = SourceScan(source, folder)
    base = folder / "chest_xray" if (folder / "chest_xray").is_dir() else folder
    require_folder(base)
    parts = [p for p in ("train", "test", "val") if (base / p).is_dir()]
    if not parts:
        scan.drop(str(base), "no train/test/val folder")
    for part in parts:
        scan_labelled_folders(scan, base / part, FOLDERS, patient_of)
    return scan
