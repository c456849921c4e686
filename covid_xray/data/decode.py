"""Decode any chest X-ray file to a checked 8-bit grayscale image, or say why it cannot be one.

DICOM files (by their 'DICM' mark or a .dcm name) go through `covid_xray.data.dicom`: modality LUT, VOI window,
MONOCHROME1 inverted, non-radiographs refused. Everything below is about the formats Pillow reads.

Handles RGB, RGBA, L, P, 16-bit, 32-bit and float modes (the last three stretched to 0..255), PNGs named .jpg
(Pillow reads the content, not the name), EXIF orientation; refuses decompression bombs before decoding their pixels,
and multi-frame files (GIF, TIFF, APNG) instead of silently reading their first frame. Ingest, `predict` and the
served model all decode and check through `InferenceTransform.decode`, so they refuse the same files.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..sources.files import file_problem
from .dicom import DicomError, decode_dicom, is_dicom


class ImageError(ValueError):
    """A file that is not a usable image; the message says why."""


# Pillow's own decompression-bomb guard (about 89 million pixels, an error past twice that) fires inside
# Image.open, before the size is known, and reads "not a readable image". `decode_grayscale` checks every file's
# width x height against the configured `max_pixels` before decoding its pixels instead, and names the size.
Image.MAX_IMAGE_PIXELS = None


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _reasons() -> Iterator[None]:
    """Pillow's and the system's errors while reading an image, as ImageError with the reason a user reads."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except ImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(f"not a readable image ({type(error).__name__})") from None
    except PermissionError:
        raise ImageError("permission denied (the file is not readable)") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"corrupt or truncated image ({error})") from None


def check_present(source: str | Path | bytes) -> None:
    """ImageError unless `source` is non-empty bytes or a readable regular file with content."""
    if isinstance(source, bytes):
        if not source:
            raise ImageError("empty file (0 bytes)")
        return
    problem = file_problem(Path(source))
    if problem:
        raise ImageError(problem)
    if Path(source).stat().st_size == 0:
        raise ImageError("empty file (0 bytes)")


def open_checked(source: str | Path | bytes, max_pixels: int = 50_000_000) -> Image.Image:
    """A file (path) or its bytes opened by Pillow, its header checked (a file, not empty, an image format, at most
    `max_pixels`, one frame) and its pixels not yet decoded; ImageError with the reason otherwise. Cheap: `predict`
    runs it on every input before it loads a model."""
    check_present(source)
    opened = io.BytesIO(source) if isinstance(source, bytes) else Path(source)
    with _reasons():
        file = Image.open(opened)
        width, height = file.size
        if width * height > max_pixels:
            raise ImageError(f"image too large: {width}x{height} = {width * height} pixels > {max_pixels}")
        frames = getattr(file, "n_frames", 1)
        # An MPO JPEG's extra frames are previews of its first (camera files); other formats' are other pictures.
        if frames > 1 and file.format != "MPO":
            raise ImageError(f"multi-frame image ({frames} frames in one {file.format} file): send one image per file")
    return file


def decode_grayscale(
    source: str | Path | bytes, max_pixels: int = 50_000_000, draft_side: int | None = None
) -> Image.Image:
    """Open a file (path) or its bytes as an 8-bit grayscale Pillow image, or raise ImageError with the reason.

    With `draft_side`, a JPEG is decoded at the smallest of its DCT scales (1/2, 1/4, 1/8) whose longer side is still
    at least `draft_side` pixels (Pillow's draft mode): a fraction of the work, for a caller that downscales anyway.
    Other formats are decoded whole. The size checks use the file's own size, before any draft."""
    check_present(source)
    if is_dicom(source):
        try:
            return decode_dicom(source, max_pixels)
        except DicomError as error:
            raise ImageError(str(error)) from None
    file = open_checked(source, max_pixels)
    width, height = file.size
    with _reasons():
        if draft_side and file.format == "JPEG" and max(width, height) > draft_side:
            scale = draft_side / max(width, height)
            file.draft("L", (max(1, round(width * scale)), max(1, round(height * scale))))
        file.load()
    grayscale = _grayscale(ImageOps.exif_transpose(file))
    # The file's own size, oriented as the image: `quality_problem` checks it, whatever scale the draft decoded at.
    turned = grayscale.size != file.size and grayscale.size == file.size[::-1]
    grayscale.info["source_size"] = (height, width) if turned else (width, height)
    return grayscale


def _grayscale(image: Image.Image) -> Image.Image:
    """8-bit grayscale of an opened image of any mode."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit, 32-bit integer or float: stretched to 0..255
        array = np.asarray(image, dtype=np.float64)
        if not np.isfinite(array).all():
            raise ImageError(f"float image with {int((~np.isfinite(array)).sum())} NaN or infinite pixels")
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) / (high - low or 1.0) * 255.0
        return Image.fromarray(scaled.astype(np.uint8), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA")
    return image.convert("L")


def quality_problem(image: Image.Image, min_side: int, max_aspect: float = 4.0) -> str | None:
    """Why a decoded image cannot be a radiograph, or None. Sizes are the file's own (`source_size`, set by
    `decode_grayscale`), also when a draft decoded it smaller."""
    width, height = image.info.get("source_size", image.size)
    if min(width, height) < min_side:
        return f"image too small: {width}x{height} (minimum side {min_side})"
    if max(width, height) / min(width, height) > max_aspect:
        return f"extreme aspect ratio {width}x{height}"
    if float(np.asarray(image, dtype=np.float32).std()) < 2.0:
        return "nearly constant image"
    return None


def resize_square(image: Image.Image, size: int) -> np.ndarray:
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)
