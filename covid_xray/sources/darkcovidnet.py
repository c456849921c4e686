"""DarkCovidNet (Ozturk et al.): "X-Ray Image DataSet/{Covid-19,No_findings,Pneumonia}/".

No metadata: the folder is the label. No_findings and Pneumonia come from NIH ChestX-ray14, whose
patient id is the first 8 digits of the file name; Covid-19 images have no patient id. The Covid-19 images were
taken from ieee8023/covid-chestxray-dataset under their file names there (the dataset's README): their origin is
that ieee8023 image, so a copy is joined with it even where it was re-cropped beyond what dedup's pixels can tell.
"""

import re
from pathlib import Path

from .base import SourceScan, register, scan_labelled_folders

FOLDERS = {"Covid-19": "covid", "No_findings": "normal", "Pneumonia": "pneumonia"}
NIH_NAME = re.compile(r"^(\d{8})_\d+")


def origin_of(folder: str, path: Path) -> str:
    return f"ieee8023:{path.name}" if folder == "Covid-19" else ""


def patient_of(path: Path) -> str:
    match = NIH_NAME.match(path.stem)
    return f"nih-{match.group(1)}" if match else f"image-{path.stem}"


@register("darkcovidnet", classes=("covid", "normal", "pneumonia"))
def read_darkcovidnet(folder: Path, source: str = "darkcovidnet") -> SourceScan:
    scan = SourceScan(source, folder)
    scan_labelled_folders(scan, folder / "X-Ray Image DataSet", FOLDERS, patient_of, origin_of)
    return scan
