"""DICOM radiographs to 8-bit grayscale, as the display chain of the standard (PS3.3 C.11) would show them.

pydicom reads the file and decodes its pixel data (compressed transfer syntaxes through the pylibjpeg plugins: JPEG
baseline/extended/lossless, JPEG-LS, JPEG 2000, RLE); then, in the standard's order:
  1. the modality LUT or rescale (slope, intercept): stored values to the modality's units;
  2. the VOI LUT or window (center, width; the first one when there are several): the range the image is meant to
     be looked at in, scaled from its output range; without one, the image's own minimum to maximum (as a 16-bit PNG);
  3. MONOCHROME1 inverted, so that bone is bright and air dark in every output, as in MONOCHROME2.
`BitsStored` sets the window's output range (pydicom's `apply_windowing`). Refused with the reason: files that are not
radiographs (a CT, MR, ultrasound, mammogram... by their Modality), several frames, more pixels than allowed, colour
models other than monochrome and RGB, and pixel data no installed decoder reads.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from PIL import Image
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut, apply_windowing

from ..sources.dicom_tags import RADIOGRAPH_MODALITIES, looks_like_dicom

NOT_RADIOGRAPHS = {
    "CT": "computed tomography",
    "MR": "magnetic resonance",
    "US": "ultrasound",
    "MG": "mammography",
    "NM": "nuclear medicine",
    "PT": "PET",
    "XA": "X-ray angiography",
    "RF": "fluoroscopy",
    "SR": "a structured report",
    "PR": "a presentation state",
    "SEG": "a segmentation",
}


class DicomError(ValueError):
    """A DICOM file that is not a usable radiograph; the message says why."""


def is_dicom(source: str | Path | bytes) -> bool:
    """Whether `source` is a DICOM file: the 'DICM' mark after the 128-byte preamble (PS3.10), or for a path also a
    .dcm/.dicom name (files written without the preamble)."""
    return source[128:132] == b"DICM" if isinstance(source, bytes) else looks_like_dicom(source)


def read_dataset(source: str | Path | bytes, pixels: bool = True) -> Any:
    """The pydicom dataset of a DICOM file or its bytes (without pixel data unless `pixels`); DicomError otherwise."""
    try:
        opened = io.BytesIO(source) if isinstance(source, bytes) else source
        # force: a .dcm file written without the 128-byte preamble and 'DICM' mark is still read
        dataset = pydicom.dcmread(opened, stop_before_pixels=not pixels, force=not isinstance(source, bytes))
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise DicomError(f"not a readable DICOM file ({type(error).__name__}: {error})") from None
    if not any(name in dataset for name in ("SOPClassUID", "Modality", "Rows", "PixelData")):
        raise DicomError("not a readable DICOM file (no DICOM header or image elements)")
    return dataset


def dataset_problem(dataset: Any, max_pixels: int) -> str | None:
    """Why a DICOM dataset cannot be a chest radiograph this pipeline reads, from its header alone, or None."""
    modality = str(dataset.get("Modality", "") or "").upper()
    if modality and modality not in RADIOGRAPH_MODALITIES:
        kind = NOT_RADIOGRAPHS.get(modality, "not a radiograph modality")
        return f"not a radiograph: DICOM modality {modality} ({kind}); chest X-rays are CR or DX"
    if "PixelData" not in dataset and "Rows" not in dataset:
        return "DICOM file without an image (no pixel data)"
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        return f"multi-frame DICOM ({frames} frames): send one image per file"
    rows, columns = int(dataset.get("Rows", 0) or 0), int(dataset.get("Columns", 0) or 0)
    if rows * columns > max_pixels:
        return f"image too large: {columns}x{rows} = {rows * columns} pixels > {max_pixels}"
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric not in ("MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422"):
        return f"DICOM colour model {photometric} is not supported (monochrome or RGB radiographs only)"
    return None


def check_header(source: str | Path | bytes, max_pixels: int) -> None:
    """DicomError when the header alone shows the file cannot be used (cheap: the pixel data is not read)."""
    problem = dataset_problem(read_dataset(source, pixels=False), max_pixels)
    if problem:
        raise DicomError(problem)


def decode_dicom(source: str | Path | bytes, max_pixels: int = 50_000_000) -> Image.Image:
    """8-bit grayscale image of a DICOM radiograph (see the module's docstring), or DicomError with the reason."""
    dataset = read_dataset(source)
    problem = dataset_problem(dataset, max_pixels)
    if problem:
        raise DicomError(problem)
    try:
        stored = dataset.pixel_array
    except Exception as error:  # noqa: BLE001 - pydicom and its plugins raise many kinds; all mean "cannot decode"
        syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
        named = f"{syntax.name} " if syntax is not None else ""
        raise DicomError(f"DICOM pixel data cannot be decoded ({named}{type(error).__name__}: {error})") from None
    if stored.ndim == 3:  # RGB (pydicom converts YBR to RGB): a secondary capture of a film
        return _with_size(Image.fromarray(_stretch(stored.astype(np.float64)), "RGB").convert("L"))
    values = apply_modality_lut(stored, dataset).astype(np.float64)
    windowed = "WindowCenter" in dataset or "VOILUTSequence" in dataset
    if windowed:
        low, high = _voi_range(dataset)
        values = (apply_voi_lut(values, dataset, index=0) - low) / ((high - low) or 1.0)
        values = np.clip(values, 0.0, 1.0)
    else:
        values = _stretch(values) / 255.0
    if not np.isfinite(values).all():
        raise DicomError("DICOM pixel data with NaN or infinite values")
    if dataset.get("PhotometricInterpretation") == "MONOCHROME1":
        values = 1.0 - values
    return _with_size(Image.fromarray(np.round(values * 255.0).astype(np.uint8), "L"))


def _voi_range(dataset: Any) -> tuple[float, float]:
    """The output range of the dataset's VOI transform: a VOI LUT's 0..2^bits-1, or what pydicom's windowing maps the
    lowest and highest inputs to (it derives them from BitsStored, the pixel representation and the rescale)."""
    if "VOILUTSequence" in dataset:
        bits = int(dataset.VOILUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2**bits - 1)
    ends = apply_windowing(np.array([-1e30, 1e30]), dataset, index=0)
    return float(min(ends)), float(max(ends))


def _stretch(values: np.ndarray) -> np.ndarray:
    """Values stretched from their minimum to maximum onto 0..255 (uint8)."""
    low, high = float(values.min()), float(values.max())
    return np.round((values - low) / ((high - low) or 1.0) * 255.0).astype(np.uint8)


def _with_size(image: Image.Image) -> Image.Image:
    image.info["source_size"] = image.size
    return image
