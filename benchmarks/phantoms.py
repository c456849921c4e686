"""Synthetic, distinct chest-X-ray-like images (procedural phantoms) in the class-folder layout, for the scale
benchmark.

    python benchmarks/phantoms.py OUT_DIR N

Each phantom has its own random anatomy: body outline, two lung fields, heart, spine, ribs, clavicles, a smooth random
texture at several scales, film noise, and a burned-in text marker; 'covid' phantoms add patchy opacities in the lungs.
Written as 256 px JPEGs under OUT_DIR/phantoms/{COVID,Normal}/P<number>_0.jpg (the `folder` reader's layout), seeded
by the image number, so any N is the first N of one fixed sequence.
"""

from __future__ import annotations

import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SIDE = 256
FOLDERS = {"covid": "COVID", "normal": "Normal"}


def _field(rng: np.random.Generator, cells: int) -> np.ndarray:
    """Smooth unit-variance random texture: cells x cells noise, upsampled bicubically to SIDE x SIDE."""
    noise = Image.fromarray(rng.standard_normal((cells, cells)).astype(np.float32), mode="F")
    smooth = np.asarray(noise.resize((SIDE, SIDE), Image.Resampling.BICUBIC), np.float32)
    return (smooth - smooth.mean()) / (smooth.std() + 1e-6)


def label_of(number: int) -> str:
    return "covid" if number % 3 == 0 else "normal"  # every third phantom


def phantom(number: int) -> tuple[Image.Image, str]:
    """Phantom `number` and its label."""
    rng = np.random.default_rng(number)
    label = label_of(number)
    y, x = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32) / SIDE
    cx = 0.5 + rng.uniform(-0.05, 0.05)
    body = ((x - cx) / rng.uniform(0.36, 0.48)) ** 2 + ((y - 0.55) / rng.uniform(0.5, 0.62)) ** 2 < 1
    image = np.where(body, rng.uniform(0.45, 0.65), rng.uniform(0.0, 0.12)).astype(np.float32)
    lungs = np.zeros_like(image)
    for side in (-1, 1):
        lx, ly = cx + side * rng.uniform(0.13, 0.2), rng.uniform(0.42, 0.5)
        lungs += ((x - lx) / rng.uniform(0.09, 0.15)) ** 2 + ((y - ly) / rng.uniform(0.2, 0.28)) ** 2 < 1
    image -= rng.uniform(0.25, 0.4) * lungs
    for _ in range(rng.integers(8, 13)):  # ribs: curved bright bands, random spacing and phase
        level, bend = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.6)
        curve = level + bend * (x - cx) ** 2 * rng.choice([1, -1]) * 0.5
        image += rng.uniform(0.04, 0.09) * (np.abs(y - curve) < rng.uniform(0.006, 0.014)) * body
    image += rng.uniform(0.15, 0.3) * (np.abs(x - cx - rng.uniform(-0.01, 0.01)) < rng.uniform(0.03, 0.05)) * body
    hx, hy = cx + rng.uniform(0.0, 0.08), rng.uniform(0.58, 0.66)
    image += rng.uniform(0.2, 0.35) * (
        ((x - hx) / rng.uniform(0.1, 0.16)) ** 2 + ((y - hy) / rng.uniform(0.08, 0.13)) ** 2 < 1
    )
    for side in (-1, 1):  # clavicles
        image += 0.12 * (np.abs(y - rng.uniform(0.16, 0.24) - side * 0.25 * (x - cx)) < 0.01) * (np.abs(x - cx) < 0.3)
    if label == "covid":
        for _ in range(rng.integers(3, 8)):
            ox, oy = cx + rng.choice([-1, 1]) * rng.uniform(0.1, 0.22), rng.uniform(0.35, 0.65)
            image += rng.uniform(0.1, 0.2) * np.exp(-(((x - ox) ** 2 + (y - oy) ** 2) / rng.uniform(0.002, 0.008)))
    image += 0.08 * _field(rng, 12) + 0.05 * _field(rng, 40) + 0.03 * _field(rng, 128)
    # Low-frequency variety (what perceptual hashes and thumbnails see): uneven exposure, a gamma, and a random
    # patient position (rotation, scale, shift). Without it the fixed layout leaves many of the 64 hash bits
    # constant, and distinct phantoms collide at hash distance 2 (about 20 pairs in 10,000).
    image += rng.uniform(0.08, 0.2) * _field(rng, int(rng.integers(3, 6)))
    image = image.clip(0, 1) ** rng.uniform(0.6, 1.6)
    picture = Image.fromarray((image * 255).astype(np.uint8), mode="L")
    scale, angle = rng.uniform(0.8, 1.2), np.deg2rad(rng.uniform(-10, 10))
    shift = rng.uniform(-0.1, 0.1, 2) * SIDE
    a, b = np.cos(angle) / scale, np.sin(angle) / scale  # output pixel -> input pixel, about the image centre
    centre = SIDE / 2
    picture = picture.transform(
        (SIDE, SIDE),
        Image.Transform.AFFINE,
        (
            a,
            b,
            centre - a * (centre + shift[0]) - b * (centre + shift[1]),
            -b,
            a,
            centre + b * (centre + shift[0]) - a * (centre + shift[1]),
        ),
        Image.Resampling.BILINEAR,
        fillcolor=int(rng.integers(0, 30)),
    )
    draw = ImageDraw.Draw(picture)
    marker = f"{rng.choice(['L', 'R', 'AP', 'PA'])} {rng.integers(0, 10_000)}"
    draw.text((rng.integers(5, 180), rng.integers(5, 30)), marker, fill=int(rng.integers(200, 256)))
    return picture, label


def _path(root: str | Path, number: int) -> Path:
    return Path(root) / "phantoms" / FOLDERS[label_of(number)] / f"P{number:06d}_0.jpg"


def write_one(args: tuple[str, int]) -> None:
    root, number = args
    path = _path(root, number)
    if not path.is_file():
        phantom(number)[0].save(path, quality=90)


def write_phantoms(root: str | Path, n: int, workers: int | None = None, pool: str | Path | None = None) -> Path:
    """Write phantoms 0..n-1 under `root` (skipping files already there); returns root.

    With `pool`, they are written there once and hard-linked into `root`, so benchmarks at several N share files.
    """
    target = Path(pool or root)
    for folder in FOLDERS.values():
        (target / "phantoms" / folder).mkdir(parents=True, exist_ok=True)
        (Path(root) / "phantoms" / folder).mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(workers) as executor:
        list(executor.map(write_one, [(str(target), i) for i in range(n)], chunksize=64))
    if pool:
        for number in range(n):
            link = _path(root, number)
            if not link.exists():
                link.hardlink_to(_path(pool, number))
    return Path(root)


if __name__ == "__main__":
    write_phantoms(sys.argv[1], int(sys.argv[2]))
