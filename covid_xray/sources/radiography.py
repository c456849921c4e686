"""Kaggle COVID-19 Radiography Database (Chowdhury, Rahman et al.).

Newer layout: COVID-19_Radiography_Dataset/{COVID,Normal,Lung_Opacity,Viral Pneumonia}/{images,masks}/
plus <class>.metadata.xlsx; older layout: class folders holding the images directly. Masks are not
images of their own; Lung_Opacity (non-COVID opacity) has no project class.
"""

from pathlib import Path

from .base import SourceScan, register, scan_labelled_folders

FOLDERS = {
    "COVID": "covid",
    "Normal": "normal",
    "NORMAL": "normal",
    "Viral Pneumonia": "pneumonia",
    "Lung_Opacity": None,
}


@register("radiography", classes=("covid", "normal", "pneumonia"))
def read_radiography(folder: Path, source: str = "radiography") -> SourceScan:
    scan = SourceScan(source, folder)
    candidates = [folder / "COVID-19_Radiography_Dataset", folder / "COVID-19 Radiography Database", folder]
    base = next((c for c in candidates if c.is_dir() and any((c / f).is_dir() for f in FOLDERS)), folder)
    # File names are '<class>-<n>.png' with n counted per class: no patient ids are published.
    scan_labelled_folders(scan, base, FOLDERS, lambda p: f"image-{p.stem}")
    return scan
