"""Figure1-COVID-chestxray-dataset: metadata.csv in cp1252 with no file-name column.

The image is images/<patientid>.jpg or images/<patientid>.png.
"""

from pathlib import Path

from .base import SourceScan, is_frontal, read_metadata_csv, register, require_columns, require_folder

LABELS = {"covid-19": "covid", "no finding": "normal", "pneumonia": "pneumonia"}


@register("figure1", classes=("covid", "normal", "pneumonia"))
def read_figure1(folder: Path, source: str = "figure1") -> SourceScan:
    require_folder(folder)
    metadata = folder / "metadata.csv"
    frame, _ = read_metadata_csv(metadata)
    require_columns(frame, ["patientid", "finding"], metadata)
    scan = SourceScan(source, folder)
    for number, row in enumerate(frame.to_dict("records"), start=1):
        patient = row["patientid"]
        where = f"metadata.csv row {number} ({patient})"
        view = row.get("view", "") or "unknown"
        if not row["finding"]:
            scan.drop(where, "blank finding")
            continue
        if view != "unknown" and not is_frontal(view):
            scan.drop(where, f"view {view!r} is not frontal")
            continue
        name = next(
            (f"images/{patient}{s}" for s in (".jpg", ".png") if (folder / "images" / f"{patient}{s}").is_file()),
            f"images/{patient}.jpg",
        )
        scan.add(
            name,
            label=LABELS.get(row["finding"].lower()),
            finding=row["finding"],
            patient_id=patient,
            view=view,
            modality=row.get("modality", "") or "X-ray",
            where=where,
        )
    return scan
