"""What `covid-xray predict` reads and writes: image paths from files, folders and CSV lists; CSV or JSON-lines results.

A folder is searched recursively for files with an image suffix; other files in it are counted and reported,
not silently passed over. A CSV list names one image per row in its `path` column (relative paths are relative
to the CSV's folder). A path that does not exist is kept, so the prediction reports it like any bad file.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from .images import ImageError
from .predict import Prediction
from .serving import OK, REFUSED
from .sources.base import IMAGE_SUFFIXES

OUTPUT_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
FIELDS = ["path", "status", "class", "covid_probability", "threshold", "out_of_distribution", "ood_distance",
          "ood_threshold", "model", "model_uri", "reason", "error"]  # fmt: skip
# status: ok (answered; `out_of_distribution` true when the image is unlike the training images), refused (read but
# not judged: it fails the checks ingest applies, `reason` says which) or error (not read: missing, not a file).
ERROR = "error"  # beside serving's OK and REFUSED: the file could not be read at all


class InputError(ValueError):
    """An input list that cannot be read at all (a CSV without a `path` column, an empty folder)."""


@dataclass
class Inputs:
    paths: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was passed over, with counts


def _from_folder(folder: Path, inputs: Inputs) -> None:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        raise InputError(f"{folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder or below")
    if len(files) > len(images):
        inputs.notes.append(f"{folder}: {len(files) - len(images)} file(s) without an image suffix passed over")
    inputs.paths.extend(str(p) for p in images)


def _from_csv(path: Path, inputs: Inputs) -> None:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read the CSV list ({error})") from None
    reader = csv.DictReader(io.StringIO(text))
    if "path" not in (reader.fieldnames or []):
        raise InputError(f"{path}: a CSV list needs a 'path' column; it has {reader.fieldnames or 'no header'}")
    for row_number, row in enumerate(reader, start=2):
        value = (row.get("path") or "").strip()
        if not value:
            raise InputError(f"{path}: row {row_number}: empty 'path'")
        inputs.paths.append(str(path.parent / value) if not Path(value).is_absolute() else value)


def collect_inputs(arguments: list[str]) -> Inputs:
    """The image paths named by `arguments` (files, folders, .csv lists), in the order given."""
    inputs = Inputs()
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            _from_folder(path, inputs)
        elif path.suffix.lower() == ".csv" and path.is_file():
            _from_csv(path, inputs)
        else:
            inputs.paths.append(argument)
    return inputs


def prediction_record(answer: Prediction, model: str, model_uri: str) -> dict:
    record = {"path": answer.path, "status": OK, "class": answer.label,
              "covid_probability": round(answer.covid_probability, 6), "threshold": round(answer.threshold, 6)}  # fmt: skip
    if answer.out_of_distribution is not None:  # a model logged with an out-of-distribution record
        record |= {"out_of_distribution": answer.out_of_distribution, "ood_distance": round(answer.ood_distance, 4),
                   "ood_threshold": round(answer.ood_threshold, 4)}  # fmt: skip
    return record | {"model": model, "model_uri": model_uri}


def answer_records(paths: list[str], answers: list[Prediction | ValueError], model: str, model_uri: str) -> list[dict]:
    """One record per input path: the prediction; a refused image (ImageError) with the reason and no class; or
    the path with the error that stopped it from being read."""
    records = []
    for path, answer in zip(paths, answers):
        if isinstance(answer, ImageError):
            records.append({"path": path, "status": REFUSED, "reason": str(answer), "model": model, "model_uri": model_uri})
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
        line += (f"\tOUT-OF-DISTRIBUTION: unlike the training images (feature distance {record['ood_distance']:.1f} > "
                 f"{record['ood_threshold']:.1f}), do not rely on this answer")  # fmt: skip
    return line


def summary_line(records: list[dict]) -> str:
    counts = {status: sum(r["status"] == status for r in records) for status in (OK, REFUSED, ERROR)}
    flagged = sum(bool(r.get("out_of_distribution")) for r in records)
    return (f"{counts[OK]} image(s) answered ({flagged} out of distribution), {counts[REFUSED]} refused, "
            f"{counts[ERROR]} failed")  # fmt: skip


def output_format(path: str | Path) -> str:
    """'csv' or 'jsonl' from the file's suffix, or InputError naming the suffixes understood."""
    found = OUTPUT_FORMATS.get(Path(path).suffix.lower())
    if found is None:
        raise InputError(f"{path}: cannot tell the output format from the suffix; use one of {sorted(OUTPUT_FORMATS)}")
    return found


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


def write_explanations(predictor, paths: list[str], folder: str | Path, batch_size: int = 32) -> list[str]:
    """A Grad-CAM overlay PNG per image in `folder`, on exactly the pixels the model saw (the predictor's own
    transform); returns the written files in the order of `paths`."""
    from .explain import grad_cam, save_grad_cam_overlay

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    covid = predictor.classes.index("covid")
    written = []
    names = overlay_names(paths)
    for start in range(0, len(paths), batch_size):
        pixels = [predictor.transform(path) for path in paths[start:start + batch_size]]
        model_input = predictor.transform.batch(pixels)
        heatmaps = grad_cam(predictor.keras_model, model_input[..., 0], covid)
        for offset, (image, heat) in enumerate(zip(pixels, heatmaps)):
            target = folder / names[start + offset]
            save_grad_cam_overlay(image, heat, str(target))
            written.append(str(target))
    return written
