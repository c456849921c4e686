"""Small descriptors of an original image for duplicate detection: a correlation thumbnail and a crop descriptor.

Both are made from the decoded original, before the model's preprocessing, so a copy that another source preprocessed
differently still matches.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

THUMBNAIL_SIDE = 32


def thumbnail(pixels: np.ndarray, side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """A zero-mean, unit-norm side×side thumbnail vector, for correlation between images."""
    small = np.asarray(Image.fromarray(pixels).resize((side, side), Image.Resampling.BOX), dtype=np.float32).ravel()
    small -= small.mean()
    norm = np.linalg.norm(small)
    return small / norm if norm else small


CROP_SIDE = 96  # side of the stretched grayscale descriptor stored per image


def crop_descriptor(pixels: np.ndarray) -> np.ndarray:
    """The original grayscale image box-resized to CROP_SIDE x CROP_SIDE (uint8), aspect ratio dropped on purpose."""
    return np.asarray(Image.fromarray(pixels).resize((CROP_SIDE, CROP_SIDE), Image.Resampling.BOX), dtype=np.uint8)
