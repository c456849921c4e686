"""The one path from an image file (or its bytes) to model input, recorded with every logged model.

The image cache calls it to make training, validation and test pixels; `predict`, the served model and
the promotion gate call it on files and uploads. Its record (`to_record`) is stored with the model, and
`from_record` rebuilds the same transform whatever config is current, so a model always sees its inputs
the way it saw them when it was evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..config import DataConfig, PreprocessConfig
from .decode import ImageError, decode_grayscale, quality_problem
from .preprocess import preprocess
from .stream import model_input, record_key

# Bump when decoding, preprocessing or resizing changes what a given record produces: cached pixels made the
# old way are then not reused, and a model recorded with another version is refused instead of fed differently.
TRANSFORM_VERSION = 4  # 4: multi-frame files refused, float images stretched (were clipped to black)
RECORD_KEYS = {"version", "image_size", "preprocess", "max_pixels", "min_side"}


@dataclass(frozen=True)
class InferenceTransform:
    """Decode (any mode, EXIF, bombs refused), check, grayscale, the configured preprocessing, resize: uint8 pixels."""

    image_size: int
    preprocess: PreprocessConfig = PreprocessConfig()
    max_pixels: int = 50_000_000
    min_side: int = 1

    @classmethod
    def from_data(cls, data: DataConfig, min_side: int) -> InferenceTransform:
        return cls(data.image_size, data.preprocess, data.max_pixels, min_side)

    def to_record(self) -> dict:
        return {
            "version": TRANSFORM_VERSION,
            "image_size": self.image_size,
            "preprocess": self.preprocess.model_dump(),
            "max_pixels": self.max_pixels,
            "min_side": self.min_side,
        }

    @classmethod
    def from_record(cls, record: dict) -> InferenceTransform:
        """The transform a model was logged with; ValueError when the record is not one this code can reproduce."""
        if not isinstance(record, dict) or set(record) != RECORD_KEYS:
            raise ValueError(f"not an inference transform record (expected keys {sorted(RECORD_KEYS)}): {record!r}")
        if record["version"] != TRANSFORM_VERSION:
            raise ValueError(
                f"the model's inference transform is version {record['version']}, this code makes version "
                f"{TRANSFORM_VERSION}: serve it with `mlflow models serve` (which runs the code logged "
                "with it) or retrain it"
            )
        return cls(
            int(record["image_size"]),
            PreprocessConfig.model_validate(record["preprocess"]),
            int(record["max_pixels"]),
            int(record["min_side"]),
        )

    @property
    def key(self) -> str:
        """Short content hash of the record: names the cache folder of the pixels this transform makes."""
        return record_key(self.to_record())

    def decode(self, source: str | Path | bytes) -> Image.Image:
        """The checked grayscale image of a file or its bytes; ImageError with the reason otherwise."""
        image = decode_grayscale(source, self.max_pixels)
        problem = quality_problem(image, self.min_side)
        if problem:
            raise ImageError(problem)
        return image

    def pixels(self, image: Image.Image) -> np.ndarray:
        """(image_size, image_size) uint8 model pixels of a decoded image."""
        return preprocess(np.asarray(image, dtype=np.uint8), self.image_size, self.preprocess)

    def __call__(self, source: str | Path | bytes) -> np.ndarray:
        return self.pixels(self.decode(source))

    def batch(self, arrays) -> np.ndarray:
        """Model input: float32 (n, size, size, 1) of transformed pixels (the models rescale 0..255 themselves)."""
        arrays = list(arrays)
        if not arrays:
            return np.zeros((0, self.image_size, self.image_size, 1), np.float32)
        return model_input(np.stack(arrays))
