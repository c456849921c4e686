"""What a DICOM file's header says about its image, for the manifest: view, modality, patient, sex and age.

Read with pydicom without the pixel data. Readers use it for DICOM files (a .dcm/.dicom name or the 'DICM' mark), so
that a hospital's export in class folders gets the patient-level split and the view filter the public sources get from
their metadata tables. Decoding the pixels is `covid_xray.data.dicom`'s work.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pydicom
from pydicom.errors import InvalidDicomError

DICOM_SUFFIXES = {".dcm", ".dicom"}
# Modalities a chest radiograph is stored under: computed and digital radiography, the non-standard DR some vendors
# write, radiographic imaging, and OT (other: scanned films, exports from PACS viewers).
RADIOGRAPH_MODALITIES = {"CR", "DX", "DR", "RG", "OT"}


class DicomTags(NamedTuple):
    view: str  # ViewPosition (PA, AP, LL...), "" when absent
    modality: str  # Modality (CR, DX...), "" when absent
    patient_id: str  # PatientID, "" when absent
    sex: str  # PatientSex (F, M, O), "" when absent
    age: str  # PatientAge as written (045Y, 006M), "" when absent


def looks_like_dicom(path: str | Path) -> bool:
    """A .dcm/.dicom name, or the 'DICM' mark after the 128-byte preamble (PS3.10)."""
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as handle:
            return handle.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def dicom_tags(path: Path) -> DicomTags | None:
    """The header's view, modality and patient id, or None when the file is not readable DICOM (the decode then
    counts it with its reason)."""
    try:
        dataset = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    names = ("ViewPosition", "Modality", "PatientID", "PatientSex", "PatientAge")
    return DicomTags(*(str(dataset.get(name, "") or "").strip() for name in names))
