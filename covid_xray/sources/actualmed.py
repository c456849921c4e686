"""Actualmed-COVID-chestxray-dataset: metadata.csv (CRLF, `imagename` column) + images/."""

from pathlib import Path

from .base import SourceScan, is_frontal, read_metadata_csv, register, require_columns, require_folder

LABELS = {"covid-19": "covid", "no finding": "normal"}


@register("actualmed", classes=("covid", "normal"))
def read_actualmed(folder: Path, source: str = "actualmed") -> SourceScan:
    require_folder(folder)
    metadata = folder / "metadata.csv"
    frame, _ = read_metadata_csv(metadata)
    require_columns(frame, ["patientid", "finding", "imagename"], metadata)
    scan = SourceScan(source, folder)
    for number, row in enumerate(frame.to_dict("records"), start=1):
        where = f"metadata.csv row {number} ({row['imagename']})"
        view = row.get("view", "") or "unknown"
        modality = row.get("modality", "") or "X-ray"
        if not row["finding"]:
            scan.drop(where, "blank finding")
        elif modality.lower() != "x-ray":
            scan.drop(where, f"modality {modality!r} is not a chest X-ray")
        elif view != "unknown" and not is_frontal(view):
            scan.drop(where, f"view {view!r} is not frontal")
        else:
            scan.add(
                str(Path("images", row["imagename"])),
                label=LABELS.get(row["finding"].lower()),
                finding=row["finding"],
                patient_id=row["patientid"],
                view=view,
                modality=modality,
                where=where,
            )
    return scan
