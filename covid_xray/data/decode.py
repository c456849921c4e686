"""Decode any chest X-ray file to a checked 8-bit grayscale image, or say why it cannot be one.

Handles RGB, RGBA, L, P, 16-bit, 32-bit and float modes (the last three stretched to 0..255), PNGs named .jpg
(Pillow reads the content, not the name), EXIF orientation; refuses decompression bombs before decoding their pixels,
and multi-frame files (GIF, TIFF, APNG) instead of silently reading their first frame. Ingest, `predict` and the
served model all decode and check through `InferenceTransform.decode`, so they refuse the same files.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..sources.files import file_problem


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


def decode_grayscale(source: str | Path | bytes, max_pixels: int = 50_000_000) -> Image.Image:
    """Open a file (path) or its bytes as an 8-bit grayscale Pillow image, or raise ImageError with the reason."""
    opened: io.BytesIO | Path
    if isinstance(source, bytes):
        if not source:
            raise ImageError("empty file (0 bytes)")
        opened = io.BytesIO(source)
    else:
        opened = Path(source)
        problem = file_problem(opened)
        if problem:
            raise ImageError(problem)
        if opened.stat().st_size == 0:
            raise ImageError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            file = Image.open(opened)
            width, height = file.size
            if width * height > max_pixels:
                raise ImageError(f"image too large: {width}x{height} = {width * height} pixels > {max_pixels}")
            frames = getattr(file, "n_frames", 1)
            # An MPO JPEG's extra frames are previews of its first (camera files); other formats' are other pictures.
            if frames > 1 and file.format != "MPO":
                raise ImageError(
                    f"multi-frame image ({frames} frames in one {file.format} file): send one image per file"
                )
            file.load()
    except ImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(f"not a readable image ({type(error).__name__})") from None
    except PermissionError:
        raise ImageError("permission denied (the file is not readable)") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"corrupt or truncated image ({error})") from None
    image: Image.Image = ImageOps.exif_transpose(file)
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
    """Why a decoded image cannot be a radiograph, or None."""
    width, height = image.size
    if min(width, height) < min_side:
        return f"image too small: {width}x{height} (minimum side {min_side})"
    if max(width, height) / min(width, height) > max_aspect:
        return f"extreme aspect ratio {width}x{height}"
    if float(np.asarray(image, dtype=np.float32).std()) < 2.0:
        return "nearly constant image"
    return None


def resize_square(image: Image.Image, size: int) -> np.ndarray:
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)
