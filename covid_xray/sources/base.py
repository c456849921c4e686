"""The interface every source reader implements, and the checks shared by all of them.

A reader turns one public dataset layout into candidate rows (one per image) and counted drops.
Metadata is untrusted: file names are resolved inside the source folder or dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..labels import CLASSES
from .dicom_tags import RADIOGRAPH_MODALITIES
from .files import file_problem

# `origin`: the upstream image a source documents it re-published (e.g. "ieee8023:<file name>"), or "".
# `sex` ("F", "M", "other" or "unknown") and `age` (years, NaN when unknown): what a source's metadata or a DICOM
# header says, for the subgroup results (covid_xray.evaluation.subgroups).
MANIFEST_COLUMNS = ["source", "path", "label", "finding", "patient_id", "view", "modality", "origin", "sex", "age"]
DROP_COLUMNS = ["source", "item", "reason"]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom"}
FRONTAL_VIEWS = {"pa", "ap", "ap supine", "ap semi erect", "ap erect"}
# The project's spelling of each frontal view (validation.allowed_views), for layouts that write them otherwise.
VIEW_NAMES = {
    "pa": "PA",
    "ap": "AP",
    "ap supine": "AP Supine",
    "ap semi erect": "AP semi erect",
    "ap erect": "AP erect",
}
# X-ray, however written: 'X-ray', and the DICOM modalities of radiographs (CR, DX...: dicom_tags).
XRAY_MODALITIES = {"x-ray": "X-ray", "xray": "X-ray", **{code.lower(): "X-ray" for code in RADIOGRAPH_MODALITIES}}


class SourceError(ValueError):
    """A source that cannot be read at all (missing folder, no metadata file)."""


@dataclass
class SourceScan:
    """What one reader found: candidate rows and every item it dropped, with the reason."""

    source: str
    folder: Path
    rows: list[dict] = field(default_factory=list)
    drops: list[dict] = field(default_factory=list)

    def drop(self, item: str, reason: str) -> None:
        self.drops.append({"source": self.source, "item": item, "reason": reason})

    def add(
        self,
        name: str,
        *,
        label: str | None,
        finding: str,
        patient_id: str,
        view: str = "unknown",
        modality: str = "X-ray",
        where: str | None = None,
        origin: str = "",
        sex: str = "",
        age: str | float | None = None,
    ) -> None:
        """Add the image `name` (relative to the source folder) unless it is unsafe, missing or unlabelled.

        `origin` names the upstream image when the source documents where it took it from; rows of one origin are
        copies of one picture (dedup joins them, however each source re-cropped or re-encoded it)."""
        item = where or name
        try:
            path = resolve_inside(self.folder, name)
        except (RuntimeError, OSError):  # Path.resolve on a link that points back at itself
            self.drop(item, f"symbolic link loop: {name}")
            return
        if path is None:
            self.drop(item, f"unsafe file name {name!r} points outside the source folder")
        elif label is None:
            self.drop(item, f"unknown finding {finding!r}")
        elif (problem := file_problem(path)) is not None:
            if (self.folder / name).is_symlink() and not path.exists():
                self.drop(item, f"broken symbolic link: {name}")
            elif problem == "file not found":
                self.drop(item, f"image file missing: {name}")
            else:
                self.drop(item, f"{problem}: {name}")
        else:
            self.rows.append(
                {
                    "source": self.source,
                    "path": str(path),
                    "label": label,
                    "finding": finding,
                    "patient_id": f"{self.source}:{patient_id}",
                    "view": view or "unknown",
                    "modality": modality or "unknown",
                    "origin": origin,
                    "sex": sex_name(sex),
                    "age": age_years(age),
                }
            )

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        return (
            pd.DataFrame(self.rows, columns=MANIFEST_COLUMNS),
            pd.DataFrame(self.drops, columns=DROP_COLUMNS),
        )


def display_path(path: str | Path) -> str:
    """The last two parts of a path (folder/file): enough to find an image in its source, short in reports."""
    return "/".join(Path(path).parts[-2:])


def resolve_inside(folder: Path, name: str) -> Path | None:
    """The absolute path of `name` inside `folder`, or None when it is absolute or escapes the folder.

    Links are followed to check where a name really points, but the path returned stays under `folder` as given:
    a data root reached through a symbolic link gives paths under that link, like every other path of the run.
    """
    if not name or Path(name).is_absolute() or "\x00" in name:
        return None
    root = folder.resolve()
    path = (root / name).resolve()
    return folder.absolute() / path.relative_to(root) if path.is_relative_to(root) else None


def require_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise SourceError(f"source folder not found: {folder}")


def read_metadata_csv(path: Path) -> tuple[pd.DataFrame, str]:
    """Read a metadata CSV as strings, whatever its encoding (UTF-8, UTF-8 with BOM, cp1252) and line ends.

    Columns without a name (a trailing comma in the header) are removed. Returns the frame and the encoding used.
    """
    problem = file_problem(path)  # before reading: a named pipe would block the read
    if problem == "file not found":
        raise SourceError(f"metadata file not found: {path}")
    if problem:
        raise SourceError(f"metadata file {path}: {problem}")
    raw = path.read_bytes()
    if not raw.strip():
        raise SourceError(f"{path}: empty metadata table (0 bytes or only blank lines)")
    if b"\x00" in raw:
        raise SourceError(f"{path}: not a text table (binary content: NUL bytes)")
    for encoding in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    from io import StringIO

    try:
        frame = pd.read_csv(StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise SourceError(f"{path}: not a readable CSV table ({' '.join(str(error).split())})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    unnamed = [c for c in frame.columns if c == "" or c.startswith("Unnamed:")]
    frame = frame.drop(columns=unnamed)
    return frame.map(lambda v: v.strip() if isinstance(v, str) else v), encoding


def require_columns(frame: pd.DataFrame, columns: list[str], path: Path) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SourceError(f"{path}: missing column(s) {missing}; found {list(frame.columns)}")


def is_frontal(view: str) -> bool:
    return view.strip().lower() in FRONTAL_VIEWS


def view_name(view: str) -> str | None:
    """The project's name of a frontal view ('pa' -> 'PA'), 'unknown' when blank, None when not frontal."""
    text = view.strip().lower()
    return "unknown" if text in ("", "unknown") else VIEW_NAMES.get(text)


SEX_NAMES = {"f": "F", "female": "F", "w": "F", "m": "M", "male": "M", "o": "other", "other": "other"}
AGE_UNITS = {"y": 1.0, "m": 1 / 12, "w": 7 / 365.25, "d": 1 / 365.25}  # DICOM AgeString: 045Y, 006M, 003W, 010D


def sex_name(text: str | None) -> str:
    """'F', 'M' or 'other' however a source writes it (DICOM PatientSex F/M/O, 'female', 'm'), else 'unknown'."""
    return SEX_NAMES.get(str(text or "").strip().lower(), "unknown")


def age_years(text: str | float | None) -> float:
    """Age in years from a number ('65', 65.0) or a DICOM age string ('045Y', '006M'); NaN when blank or unreadable,
    or outside 0..130."""
    value = str("" if text is None else text).strip().lower()
    unit = AGE_UNITS.get(value[-1:]) if value else None
    try:
        years = float(value[:-1]) * unit if unit is not None else float(value)
    except ValueError:
        return float("nan")
    return years if 0 <= years <= 130 else float("nan")


def modality_name(modality: str) -> str | None:
    """'X-ray' for an X-ray modality however it is written ('CR', 'DX', 'x-ray'; blank counts as X-ray), else None."""
    return XRAY_MODALITIES.get(modality.strip().lower() or "x-ray")


def label_lookup(labels: dict[str, str | None] | None) -> dict[str, str | None]:
    """Label text (lower case) -> project class, None for a class the project does not use.

    Without a mapping the labels are the project's class names, in any case ('COVID', 'Normal').
    """
    return {key.strip().lower(): value for key, value in (labels or {c: c for c in CLASSES}).items()}


def compile_patient_pattern(pattern: str) -> re.Pattern:
    """A file-name pattern whose group `patient` (or first group) is the patient id; ValueError says what is wrong."""
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise ValueError(f"not a regular expression ({error}): {pattern!r}") from None
    if compiled.groups == 0:
        raise ValueError(f"needs a group around the patient id, e.g. '^(\\d+)_' or '(?P<patient>...)': {pattern!r}")
    return compiled


def patient_in(pattern: re.Pattern, name: str) -> str | None:
    """The patient id that `pattern` finds in the file name `name`, None when it does not match."""
    match = pattern.search(name)
    if match is None:
        return None
    return match.group("patient" if "patient" in pattern.groupindex else 1) or None


def scan_labelled_folders(
    scan: SourceScan,
    base: Path,
    folder_labels: Mapping[str, str | None],
    patient_of: Callable[[Path], str],
    origin_of: Callable[[str, Path], str] | None = None,
) -> None:
    """Read a layout whose label is the folder name: base/<folder>/<image>.

    A folder mapped to None is a class the project does not use; its images are dropped with that reason.
    `origin_of(folder name, path)` is the documented upstream image of a file, or "" (see `SourceScan.add`).
    """
    require_folder(base)
    found = {p.name: p for p in base.iterdir() if p.is_dir()}
    if not any(name in found for name in folder_labels):
        scan.drop(str(base.relative_to(scan.folder)), f"none of the class folders {sorted(folder_labels)} found")
        return
    for folder_name, label in folder_labels.items():
        folder = found.get(folder_name)
        if folder is None:
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_dir():  # rglob walks it
                continue
            relative = str(path.relative_to(scan.folder))
            problem = file_problem(path)  # a named pipe, a device, a link loop: counted with what it is
            if problem:
                scan.drop(relative, problem)
                continue
            if "masks" in path.relative_to(folder).parts:
                scan.drop(relative, "segmentation mask, not a radiograph")
            elif path.suffix.lower() not in IMAGE_SUFFIXES:
                scan.drop(relative, "not an image file name")
            elif label is None:
                scan.drop(relative, f"class folder {folder_name!r} is not a project class")
            else:
                origin = origin_of(folder_name, path) if origin_of else ""
                scan.add(relative, label=label, finding=folder_name, patient_id=patient_of(path), origin=origin)


# reader(folder, source_name, **options): options are the reader's own keys of its source config (READER_OPTIONS).
Reader = Callable[..., SourceScan]
READERS: dict[str, Reader] = {}
# The project classes each layout can provide, so a config asking for others fails before anything runs.
READER_CLASSES: dict[str, frozenset[str]] = {}
READER_OPTIONS: dict[str, frozenset[str]] = {}


def register(name: str, classes: tuple[str, ...], options: tuple[str, ...] = ()) -> Callable[[Reader], Reader]:
    def wrap(reader: Reader) -> Reader:
        READERS[name] = reader
        READER_CLASSES[name] = frozenset(classes)
        READER_OPTIONS[name] = frozenset(options)
        return reader

    return wrap
