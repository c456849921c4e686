"""What `covid-xray predict` writes: one record per input (answered, refused with the reason, or not read with the
error), as text, CSV or JSON lines, and Grad-CAM overlays on exactly the pixels the model saw. Its inputs are
collected by `serving.inputs`.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ..data.decode import ImageError
from ..evaluation.explain import grad_cam, save_grad_cam_overlay
from ..labels import POSITIVE
from .inputs import output_format
from .predict import Prediction, Predictor
from .pyfunc import OK, REFUSED

FIELDS = [
    "path",
    "status",
    "class",
    "covid_probability",
    "threshold",
    "out_of_distribution",
    "ood_distance",
    "ood_threshold",
    "model",
    "model_uri",
    "reason",
    "error",
]
# status: ok (answered; `out_of_distribution` true when the image is unlike the training images), refused (read but
# not judged: it fails the checks ingest applies, `reason` says which) or error (not read: missing, not a file).
ERROR = "error"  # beside serving's OK and REFUSED: the file could not be read at all


def prediction_record(answer: Prediction, model: str, model_uri: str) -> dict:
    record = {
        "path": answer.path,
        "status": OK,
        "class": answer.label,
        "covid_probability": round(answer.covid_probability, 6),
        "threshold": round(answer.threshold, 6),
    }
    for name, probability in (answer.class_probabilities or {}).items():  # three_class: every class's probability
        record[f"p_{name}"] = round(probability, 6)
    distance, threshold = answer.ood_distance, answer.ood_threshold
    if answer.out_of_distribution is not None and distance is not None and threshold is not None:
        # a model logged with an out-of-distribution record
        record |= {
            "out_of_distribution": answer.out_of_distribution,
            "ood_distance": round(distance, 4),
            "ood_threshold": round(threshold, 4),
        }
    return record | {"model": model, "model_uri": model_uri}


def answer_records(paths: list[str], answers: list[Prediction | ValueError], model: str, model_uri: str) -> list[dict]:
    """One record per input path: the prediction; a refused image (ImageError) with the reason and no class; or
    the path with the error that stopped it from being read."""
    records = []
    for path, answer in zip(paths, answers, strict=True):
        if isinstance(answer, ImageError):
            records.append(
                {"path": path, "status": REFUSED, "reason": str(answer), "model": model, "model_uri": model_uri}
            )
        elif isinstance(answer, Exception):
            records.append({"path": path, "status": ERROR, "error": str(answer)})
        else:
            records.append(prediction_record(answer, model, model_uri))
    return records


def text_line(record: dict) -> str:
    """The text output of an answered or refused record: tab-separated, with a loud word for what needs a look."""
    if record["status"] == REFUSED:
        return f"{record['path']}\tREFUSED\t{record['reason']}"
    line = f"{record['path']}\t{record['class']}\tcovid_probability={record['covid_probability']:.4f}"
    if record.get("out_of_distribution"):
        line += (
            f"\tOUT-OF-DISTRIBUTION: unlike the training images (feature distance {record['ood_distance']:.1f} > "
            f"{record['ood_threshold']:.1f}), do not rely on this answer"
        )
    return line


def summary_line(records: list[dict]) -> str:
    counts = {status: sum(r["status"] == status for r in records) for status in (OK, REFUSED, ERROR)}
    flagged = sum(bool(r.get("out_of_distribution")) for r in records)
    return (
        f"{counts[OK]} image(s) answered ({flagged} out of distribution), {counts[REFUSED]} refused, "
        f"{counts[ERROR]} failed"
    )


def write_records(records: list[dict], path: str | Path) -> None:
    """One row or JSON line per input: answered files with their class, refused ones with the reason, unread ones
    with the error."""
    path = Path(path)
    fmt = output_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        if fmt == "csv":
            fields = FIELDS + sorted({k for r in records for k in r} - set(FIELDS))
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(records)
        else:
            handle.writelines(json.dumps(record) + "\n" for record in records)


def overlay_names(paths: list[str]) -> list[str]:
    """A distinct PNG file name per image path (same stems in different folders get -2, -3...)."""
    seen: dict[str, int] = {}
    names = []
    for path in paths:
        stem = Path(path).stem or "image"
        seen[stem] = seen.get(stem, 0) + 1
        names.append(f"{stem}.png" if seen[stem] == 1 else f"{stem}-{seen[stem]}.png")
    return names


def write_explanations(predictor: Predictor, paths: list[str], folder: str | Path, batch_size: int = 32) -> list[str]:
    """A Grad-CAM overlay PNG per image in `folder`, on exactly the pixels the model saw (the predictor's own
    transform); returns the written files in the order of `paths`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    covid = predictor.classes.index(POSITIVE)
    written = []
    names = overlay_names(paths)
    for start in range(0, len(paths), batch_size):
        pixels = [predictor.transform(path) for path in paths[start : start + batch_size]]
        model_input = predictor.transform.batch(pixels)
        heatmaps = grad_cam(predictor.keras_model, model_input[..., 0], covid)
        for offset, (image, heat) in enumerate(zip(pixels, heatmaps, strict=True)):
            target = folder / names[start + offset]
            save_grad_cam_overlay(image, heat, str(target))
            written.append(str(target))
    return written
