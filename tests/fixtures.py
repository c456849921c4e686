"""Small generated chest-X-ray-like images written in the real public layouts of each source."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image


def xray_like(seed: int, label: str, size: int = 96) -> Image.Image:
    """A grayscale picture with a random texture of its own and a class signal a small model can learn."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    image = 60 + 80 * np.exp(-((x - 0.5) ** 2) / 0.08) + rng.normal(0, 25, (size, size))
    for _ in range(6):
        cx, cy, r = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.03, 0.12)
        image += rng.uniform(-60, 60) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / r**2)
    if label == "covid":  # bright patches in both lower lung fields
        for cx in (0.3, 0.7):
            image += 70 * np.exp(-((x - cx) ** 2 + (y - 0.7) ** 2) / 0.02)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), mode="L")


def write_ieee8023(root: Path, n_per_class: int = 12, start_seed: int = 0, extra_rows: list[dict] | None = None) -> Path:
    """ieee8023 layout: metadata.csv (with the upstream trailing empty column) + images/."""
    folder = root / "ieee8023"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(2 * n_per_class):
        label = "covid" if i % 2 == 0 else "normal"
        name = f"img-{start_seed + i:04d}.{'png' if i % 3 else 'jpg'}"
        xray_like(start_seed + i, label).save(folder / "images" / name, format="PNG" if i % 3 else "JPEG")
        rows.append({"patientid": str(1000 + (start_seed + i) // 2 * 2 + i % 2), "finding": "COVID-19" if label == "covid" else "No Finding",
                     "view": "PA" if i % 4 else "AP Supine", "modality": "X-ray", "folder": "images", "filename": name})  # fmt: skip
    rows += extra_rows or []
    columns = ["patientid", "offset", "sex", "age", "finding", "view", "modality", "folder", "filename", ""]
    with open(folder / "metadata.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return folder
