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
from ..sources.files import file_problem
from .decode import ImageError, decode_grayscale, quality_problem
from .preprocess import preprocess
from .stream import model_input, record_key

# Bump when decoding, preprocessing or resizing changes what a given record produces: cached pixels made the
# old way are then not reused, and a model recorded with another version is refused instead of fed differently.
# 4: multi-frame files refused, float images stretched (were clipped to black). 5: files larger than twice the model's
# side decoded small (JPEG draft) or downscaled before the preprocessing (never released: it cost the VGG16 variants
# test ROC AUC). 6: the same at four times the model's side (`work_side`). 6 also reads DICOM files.
TRANSFORM_VERSION = 6
RECORD_KEYS = {"version", "image_size", "preprocess", "max_pixels", "min_side"}


@dataclass(frozen=True)
class InferenceTransform:
    """Decode (any mode, EXIF, bombs refused, JPEGs drafted), check, grayscale, downscale to `work_side`, the
    configured preprocessing, resize: uint8 pixels."""

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

    @property
    def work_side(self) -> int:
        """The longest side the preprocessing works at: four times the model's (512 px for a 128 px model). Larger
        files are drafted or downscaled to it first. At twice the model's side the preprocessing ran 3x faster on
        512 px images, but the default run's VGG16 variants lost test ROC AUC (0.849 to 0.784 and 0.830 to 0.795,
        docs/benchmarks.md#predict-throughput); at four times, the team store's 512 px images are preprocessed
        exactly as before, and only larger files (hospital exports, the public originals) take the shortcut."""
        return 4 * self.image_size

    def decode(self, source: str | Path | bytes, full: bool = False) -> Image.Image:
        """The checked grayscale image of a file or its bytes, downscaled on decode where the format allows it (JPEG
        draft) unless `full`; ImageError with the reason otherwise."""
        image = decode_grayscale(source, self.max_pixels, None if full else self.work_side)
        problem = quality_problem(image, self.min_side)
        if problem:
            raise ImageError(problem)
        return image

    def pixels(self, image: Image.Image) -> np.ndarray:
        """(image_size, image_size) uint8 model pixels of an image from `decode`: downscaled to `work_side`
        (bilinear, antialiased), then the configured preprocessing and the final resize."""
        if max(image.size) > self.work_side:
            scale = self.work_side / max(image.size)
            width, height = (max(1, round(side * scale)) for side in image.size)
            image = image.resize((width, height), Image.Resampling.BILINEAR)
        return preprocess(np.asarray(image, dtype=np.uint8), self.image_size, self.preprocess)

    def __call__(self, source: str | Path | bytes) -> np.ndarray:
        return self.pixels(self.decode(source))

    def pixels_or_reason(self, path: str | Path) -> np.ndarray | ValueError:
        """The pixels of one file, or the ValueError saying why there are none (an ImageError for a file read but
        refused by the checks ingest applies). Returned, not raised: `predict` runs it in worker processes."""
        path = Path(path)
        problem = file_problem(path)  # not found, a folder, a FIFO or device, a symbolic link loop
        if problem:
            return ValueError(problem)
        try:
            return self(path)
        except ValueError as error:
            return error
        except OSError as error:
            return ValueError(f"cannot read file ({error.strerror or error})")

    def batch(self, arrays) -> np.ndarray:
        """Model input: float32 (n, size, size, 1) of transformed pixels (the models rescale 0..255 themselves)."""
        arrays = list(arrays)
        if not arrays:
            return np.zeros((0, self.image_size, self.image_size, 1), np.float32)
        return model_input(np.stack(arrays))
