"""The content-addressed image cache: each file decoded once per transform, its model pixels and duplicate
descriptors kept on disk under the file's sha256 and the transform's record.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np

from ..config import DataConfig, PreprocessConfig
from .decode import resize_square
from .descriptors import crop_descriptor, thumbnail
from .stream import CacheRef, cache_folder, cached_file
from .transform import InferenceTransform


class CacheError(RuntimeError):
    """The image cache cannot be written: a problem of `data.cache_dir`, not of the image (never counted as a drop)."""


@dataclass(frozen=True)
class DecodedImage:
    pixels: np.ndarray  # (size, size) uint8, after the configured preprocessing
    width: int  # of the original file
    height: int
    phash: str  # 64-bit perceptual hash of the original, hex
    thumbnail: np.ndarray  # of the original without preprocessing, for near-duplicate correlation
    crop_descriptor: np.ndarray  # of the original, for crop-tolerant duplicate detection (dedup.crop_descriptor)


class ImageCache:
    """Model pixels (the output of the run's InferenceTransform) and perceptual hashes, keyed by file content and
    the transform's record."""

    def __init__(
        self,
        root: str | Path,
        image_size: int,
        max_pixels: int,
        min_side: int,
        preprocessing: PreprocessConfig | None = None,
    ):
        self.transform = InferenceTransform(image_size, preprocessing or PreprocessConfig(), max_pixels, min_side)
        self.image_size = image_size
        self.folder = cache_folder(root, self.transform.to_record())
        self.key = self.folder.name
        self.root = str(root)
        self.hits = 0
        self.misses = 0

    @classmethod
    def for_data(cls, data: DataConfig, min_side: int) -> ImageCache:
        """The cache of a run's data settings: ingest fills it and the splits read it, so both must build it here."""
        return cls(data.cache_dir, data.image_size, data.max_pixels, min_side, data.preprocess)

    def ref(self) -> CacheRef:
        """This cache's identity, as splits by reference hold it."""
        return CacheRef(self.root, self.transform.to_record())

    def _file(self, sha256: str) -> Path:
        return cached_file(self.folder, sha256)

    def get(self, path: str | Path, sha256: str) -> DecodedImage:
        """Decoded image for the file `path` whose content hash is `sha256`; decodes only on a cache miss."""
        cached = self._file(sha256)
        if cached.is_file():
            self.hits += 1
            with np.load(cached) as data:
                return DecodedImage(
                    data["pixels"],
                    int(data["width"]),
                    int(data["height"]),
                    str(data["phash"]),
                    data["thumbnail"],
                    data["crop_descriptor"],
                )
        self.misses += 1
        pixels = self.transform(path)  # what predict and the served model compute for this file
        image = self.transform.decode(path, full=True)  # the duplicate search compares full-resolution images
        decoded = DecodedImage(
            pixels,
            image.width,
            image.height,
            str(imagehash.phash(image)),
            thumbnail(resize_square(image, self.image_size)),
            crop_descriptor(np.asarray(image, dtype=np.uint8)),
        )
        partial = cached.with_suffix(f".{os.getpid()}.tmp.npz")  # two processes may decode copies of one file
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            np.savez(
                partial,
                pixels=decoded.pixels,
                width=decoded.width,
                height=decoded.height,
                phash=decoded.phash,
                thumbnail=decoded.thumbnail,
                crop_descriptor=decoded.crop_descriptor,
            )
            partial.replace(cached)
        except OSError as error:
            raise CacheError(f"cannot write the image cache in {self.folder} ({error.strerror or error})") from None
        return decoded

    def has(self, sha256: str) -> bool:
        """Whether the image with content hash `sha256` is cached (ingest has decoded it with this transform)."""
        return self._file(sha256).is_file()

    def pixels(self, sha256: str) -> np.ndarray:
        with np.load(self._file(sha256)) as data:
            return data["pixels"]

    def stack(self, keys: list[str]) -> np.ndarray:
        """Cached pixels of `keys` as one (n, size, size) array."""
        if not keys:
            return np.zeros((0, self.image_size, self.image_size), np.uint8)
        return np.stack([self.pixels(key) for key in keys])
