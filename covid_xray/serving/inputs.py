"""What `covid-xray predict` reads: image paths from files, folders and CSV lists, and the output file's format, all
checked before any model is loaded.

A folder is searched recursively for files with an image suffix; other files in it are counted and reported, not
silently passed over. A CSV list names one image per row in its `path` column (relative paths are relative to the
CSV's folder). A path that does not exist is kept, so the prediction reports it like any bad file.
"""

from __future__ import annotations

import csv
import io
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..data.decode import ImageError, check_present, open_checked
from ..data.dicom import DicomError, check_header, is_dicom
from ..sources.base import IMAGE_SUFFIXES

OUTPUT_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}


class InputError(ValueError):
    """An input list that cannot be read at all (a CSV without a `path` column, an empty folder)."""


@dataclass
class Inputs:
    paths: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was passed over, with counts


def _from_folder(folder: Path, inputs: Inputs) -> None:
    files = sorted(p for p in folder.rglob("*") if not p.is_dir())  # special files too: answered with what they are
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


def output_format(path: str | Path) -> str:
    """'csv' or 'jsonl' from the file's suffix, or InputError naming the suffixes understood."""
    found = OUTPUT_FORMATS.get(Path(path).suffix.lower())
    if found is None:
        raise InputError(f"{path}: cannot tell the output format from the suffix; use one of {sorted(OUTPUT_FORMATS)}")
    return found


def check_writable(path: str | Path, option: str, folder: bool = False) -> None:
    """An InputError naming `option` when `path` (a file, or with `folder` a folder) cannot be written: checked
    before any image is read, so a bad path never costs a whole prediction run."""
    path = Path(path)
    wanted = "a folder" if folder else "a file"
    if path.exists() or path.is_symlink():
        problem = None if (path.is_dir() if folder else path.is_file()) else f"exists and is not {wanted}"
        if problem is None and not os.access(path, os.W_OK):
            problem = "is not writable (permission denied)"
        if problem:
            raise InputError(f"{option} {path}: {problem}")
        if not folder:
            return
    ancestor = path.parent if not path.exists() else path
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"{option} {path}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"{option} {path}: cannot create anything in {ancestor} (permission denied)")


def check_new_folder(path: str | Path, option: str) -> None:
    """An InputError naming `option` unless `path` is a folder that can be created, or an empty one that can be
    written: for outputs that must not mix with older files."""
    check_writable(path, option, folder=True)
    if Path(path).is_dir() and any(Path(path).iterdir()):
        raise InputError(f"{option} {path}: the folder is not empty; name a new folder")


def unreadable(paths: list[str]) -> dict[str, str]:
    """The paths that cannot be images whatever the model, with the reason: not a regular file, empty, not an image
    format, several frames. Reads headers only (no pixels), so `predict` can refuse a list of them before it spends
    seconds loading a model; the model's own checks (size, contrast) come later."""
    problems = {}
    for path in paths:
        try:
            check_present(path)
            if is_dicom(path):
                check_header(path, max_pixels=sys.maxsize)
            else:
                open_checked(path, max_pixels=sys.maxsize).close()
        except (ImageError, DicomError) as error:
            problems[path] = str(error)
        except OSError as error:
            problems[path] = f"cannot read file ({error.strerror or error})"
    return problems
