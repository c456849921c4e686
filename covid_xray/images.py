"""Decode any chest X-ray file once to a grayscale array, check it, and cache the result.

Handles RGB, RGBA, L, P, 16-bit, 32-bit and float modes (the last three stretched to 0..255), PNGs named .jpg
(Pillow reads the content, not the name), EXIF orientation; refuses decompression bombs before decoding their pixels,
and multi-frame files (GIF, TIFF, APNG) instead of silently reading their first frame. Ingest, `predict` and the
served model all decode and check through `InferenceTransform.decode`, so they refuse the same files.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Iterator

import imagehash
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .config import DataConfig, PreprocessConfig
from .dedup import crop_descriptor, thumbnail


class ImageError(ValueError):
    """A file that is not a usable image; the message says why."""


class CacheError(RuntimeError):
    """The image cache cannot be written: a problem of `data.cache_dir`, not of the image (never counted as a drop)."""


# Pillow's own decompression-bomb guard (about 89 million pixels, an error past twice that) fires inside
# Image.open, before the size is known, and reads "not a readable image". `decode_grayscale` checks every file's
# width x height against the configured `max_pixels` before decoding its pixels instead, and names the size.
Image.MAX_IMAGE_PIXELS = None


def file_problem(path: Path) -> str | None:
    """Why `path` cannot be opened as a file (file not found, symbolic link loop, not a file: a folder), or None."""
    try:
        if path.is_dir():
            return "not a file"  # a folder
        path.stat()
    except FileNotFoundError:
        return "file not found" if not path.is_symlink() else f"broken symbolic link (to {os.readlink(path)})"
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "symbolic link loop"
        return f"cannot read the file ({error.strerror or error})"
    return None


@dataclass(frozen=True)
class DecodedImage:
    pixels: np.ndarray  # (size, size) uint8, after the configured preprocessing
    width: int  # of the original file
    height: int
    phash: str  # 64-bit perceptual hash of the original, hex
    thumbnail: np.ndarray  # of the original without preprocessing, for near-duplicate correlation
    crop_descriptor: np.ndarray  # of the original, for crop-tolerant duplicate detection (dedup.crop_descriptor)


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def decode_grayscale(source: str | Path | bytes, max_pixels: int = 50_000_000) -> Image.Image:
    """Open a file (path) or its bytes as an 8-bit grayscale Pillow image, or raise ImageError with the reason."""
    if isinstance(source, bytes):
        if not source:
            raise ImageError("empty file (0 bytes)")
        source = io.BytesIO(source)
    else:
        source = Path(source)
        problem = file_problem(source)
        if problem:
            raise ImageError(problem)
        if source.stat().st_size == 0:
            raise ImageError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(source)
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(f"image too large: {width}x{height} = {width * height} pixels > {max_pixels}")
            frames = getattr(image, "n_frames", 1)
            # An MPO JPEG's extra frames are previews of its first (camera files); other formats' are other pictures.
            if frames > 1 and image.format != "MPO":
                raise ImageError(f"multi-frame image ({frames} frames in one {image.format} file): send one image per file")
            image.load()
    except ImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(f"not a readable image ({type(error).__name__})") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"corrupt or truncated image ({error})") from None
    image = ImageOps.exif_transpose(image)
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


# Bump when the cached file's fields change (3: the crop-tolerant duplicate descriptor), so old files are not read.
CACHE_FORMAT = 3


class ImageCache:
    """Model pixels (the output of the run's InferenceTransform) and perceptual hashes, keyed by file content and
    the transform's record."""

    def __init__(self, root: str | Path, image_size: int, max_pixels: int, min_side: int,
                 preprocessing: PreprocessConfig | None = None):  # fmt: skip
        from .transform import InferenceTransform  # transform.py builds on this module's decoding

        self.transform = InferenceTransform(image_size, preprocessing or PreprocessConfig(), max_pixels, min_side)
        self.image_size = image_size
        self.key = f"{self.transform.key}-f{CACHE_FORMAT}"
        self.folder = Path(root) / "images" / self.key
        self.hits = 0
        self.misses = 0

    @classmethod
    def for_data(cls, data: DataConfig, min_side: int) -> "ImageCache":
        """The cache of a run's data settings: ingest fills it and the splits read it, so both must build it here."""
        return cls(data.cache_dir, data.image_size, data.max_pixels, min_side, data.preprocess)

    def _file(self, sha256: str) -> Path:
        return self.folder / sha256[:2] / f"{sha256}.npz"

    def get(self, path: str | Path, sha256: str) -> DecodedImage:
        """Decoded image for the file `path` whose content hash is `sha256`; decodes only on a cache miss."""
        cached = self._file(sha256)
        if cached.is_file():
            self.hits += 1
            with np.load(cached) as data:
                return DecodedImage(data["pixels"], int(data["width"]), int(data["height"]), str(data["phash"]),
                                    data["thumbnail"], data["crop_descriptor"])  # fmt: skip
        self.misses += 1
        image = self.transform.decode(path)
        pixels = self.transform.pixels(image)
        decoded = DecodedImage(pixels, image.width, image.height, str(imagehash.phash(image)),
                               thumbnail(resize_square(image, self.image_size)),
                               crop_descriptor(np.asarray(image, dtype=np.uint8)))  # fmt: skip
        partial = cached.with_suffix(f".{os.getpid()}.tmp.npz")  # two processes may decode copies of one file
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            np.savez(partial, pixels=decoded.pixels, width=decoded.width, height=decoded.height, phash=decoded.phash,
                     thumbnail=decoded.thumbnail, crop_descriptor=decoded.crop_descriptor)  # fmt: skip
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


@dataclass(frozen=True)
class Described:
    """What ingest keeps of one decoded file (no model pixels: they stay in the cache)."""

    sha256: str
    phash: str
    width: int
    height: int
    thumbnail: np.ndarray
    crop_descriptor: np.ndarray
    from_cache: bool


def describe(cache: ImageCache, path: str | Path) -> Described | str:
    """Hash `path`, fill the cache for it and return its description, or the reason it is unusable (a drop)."""
    try:
        sha = sha256_file(path)
        hits = cache.hits
        image = cache.get(path, sha)
    except (ImageError, OSError) as error:
        return str(error)
    return Described(sha, image.phash, image.width, image.height, image.thumbnail, image.crop_descriptor,
                     cache.hits > hits)  # fmt: skip


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


_worker_cache: ImageCache | None = None


def _start_worker(cache: ImageCache) -> None:
    global _worker_cache
    _worker_cache = cache


def _describe_in_worker(path: str) -> Described | str:
    return describe(_worker_cache, path)


def describe_all(cache: ImageCache, paths: list[str], workers: int | None = None,
                 progress: bool | None = None) -> Iterator[Described | str]:  # fmt: skip
    """`describe` of every path, in the order of `paths`, decoded by `workers` processes (default: all cores).

    Processes rather than threads: decoding, the perceptual hash and preprocessing are partly pure Python. They are
    spawned (not forked), so a caller that has TensorFlow's threads running is safe. `progress`: a tqdm bar on
    stderr (None: only when stderr is a terminal).
    """
    from tqdm import tqdm

    workers = min(workers or available_cores(), max(len(paths), 1))
    bar = tqdm(total=len(paths), desc="decoding images", unit="img", disable=None if progress is None else not progress,
               mininterval=1.0)  # fmt: skip
    with bar:
        if workers == 1:
            for path in paths:
                yield describe(cache, path)
                bar.update()
            return
        chunk = max(1, min(64, len(paths) // (workers * 8)))
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_start_worker,
                                 initargs=(cache,)) as pool:  # fmt: skip
            for result in pool.map(_describe_in_worker, [str(p) for p in paths], chunksize=chunk):
                yield result
                bar.update()
