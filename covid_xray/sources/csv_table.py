"""Your own export as a table: a CSV with columns path, label and optionally patient_id, view, modality, sex, age.

Paths are relative to the source folder (Windows separators accepted) and must stay inside it. Labels are the
project's class names (any case) unless the source config maps them (`labels`). For a DICOM file, a blank patient id,
view, modality, sex or age is read from its header (PatientID, ViewPosition, Modality, PatientSex, PatientAge); a value
in the table wins. A row still without a patient id is its own patient; a blank view is 'unknown'; a blank modality is
an X-ray.
"""

from pathlib import Path

from .base import (
    CLASSES,
    SourceError,
    SourceScan,
    label_lookup,
    modality_name,
    read_metadata_csv,
    register,
    require_columns,
    require_folder,
    resolve_inside,
    view_name,
)
from .dicom_tags import DicomTags, dicom_tags, looks_like_dicom

COLUMNS = {
    "patient_id": "PatientID",
    "view": "ViewPosition",
    "modality": "Modality",
    "sex": "PatientSex",
    "age": "PatientAge",
}


@register("csv", classes=CLASSES, options=("csv_file", "labels"))
def read_csv_table(
    folder: Path, source: str = "csv", csv_file: str = "labels.csv", labels: dict[str, str | None] | None = None
) -> SourceScan:
    require_folder(folder)
    metadata = resolve_inside(folder, csv_file)
    if metadata is None:
        raise SourceError(f"csv_file {csv_file!r} points outside the source folder {folder}")
    frame, _ = read_metadata_csv(metadata)
    require_columns(frame, ["path", "label"], metadata)
    lookup = label_lookup(labels)
    scan = SourceScan(source, folder)
    for number, row in enumerate(frame.to_dict("records"), start=1):
        name, text = row["path"].replace("\\", "/"), row["label"]
        where = f"{csv_file} row {number} ({name or 'no path'})"
        row, said = with_header_tags(row, header_tags(folder, name))
        view, modality = view_name(row.get("view", "")), modality_name(row.get("modality", ""))
        if not name:
            scan.drop(where, "blank path")
        elif not text:
            scan.drop(where, "blank label")
        elif text.strip().lower() not in lookup:
            scan.drop(where, f"unknown label {text!r} (labels: {', '.join(sorted(lookup))})")
        elif lookup[text.strip().lower()] is None:
            scan.drop(where, f"label {text!r} is not a project class")
        elif modality is None:
            scan.drop(where, f"{said['modality']} {row['modality']!r} is not a chest X-ray")
        elif view is None:
            scan.drop(where, f"{said['view']} {row['view']!r} is not frontal")
        else:
            scan.add(
                name,
                label=lookup[text.strip().lower()],
                finding=text,
                view=view,
                modality=modality,
                patient_id=row.get("patient_id", "") or f"image-{name}",
                where=where,
                sex=row.get("sex", ""),
                age=row.get("age", ""),
            )
    return scan


def header_tags(folder: Path, name: str) -> DicomTags | None:
    """The DICOM header of the listed file, or None (not DICOM, unreadable, missing: the scan reports those)."""
    path = resolve_inside(folder, name) if name else None
    if path is None or not path.is_file() or not looks_like_dicom(path):
        return None
    return dicom_tags(path)


def with_header_tags(row: dict, tags: DicomTags | None) -> tuple[dict, dict[str, str]]:
    """`row` with its blank optional columns filled from `tags`, and where each value came from (the column's name,
    or the DICOM tag's) for the drop reasons."""
    said = {column: column for column in COLUMNS}
    if tags is None:
        return row, said
    row = dict(row)
    for column, tag in COLUMNS.items():
        if not str(row.get(column, "") or "").strip() and getattr(tags, column):
            row[column], said[column] = getattr(tags, column), f"DICOM {tag}"
    return row, said
