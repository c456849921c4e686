"""Hannover Medical School COVID-19 image repository: data.csv + png/<image_id>.png (CC BY 3.0).

Every image is of a COVID-19 patient: the source has no negatives. `projection` is the view ('ap', 'pa'),
`modality` CR or DX (both X-ray radiography).
"""

from pathlib import Path

from .base import SourceScan, modality_name, read_metadata_csv, register, require_columns, require_folder, view_name


@register("hannover", classes=("covid",))
def read_hannover(folder: Path, source: str = "hannover") -> SourceScan:
    require_folder(folder)
    metadata = folder / "data.csv"
    frame, _ = read_metadata_csv(metadata)
    require_columns(frame, ["patient_id", "image_id", "modality", "projection"], metadata)
    scan = SourceScan(source, folder)
    for number, row in enumerate(frame.to_dict("records"), start=1):
        image_id = row["image_id"]
        where = f"data.csv row {number} ({image_id or 'no image_id'})"
        view, modality = view_name(row["projection"]), modality_name(row["modality"])
        if not image_id:
            scan.drop(where, "blank image_id")
        elif not row["patient_id"]:
            scan.drop(where, "blank patient_id")
        elif modality is None:
            scan.drop(where, f"modality {row['modality']!r} is not a chest X-ray")
        elif view is None:
            scan.drop(where, f"view {row['projection']!r} is not frontal")
        else:
            scan.add(
                f"png/{image_id}.png",
                label="covid",
                finding="COVID-19",
                patient_id=row["patient_id"],
                view=view,
                modality=modality,
                where=where,
                sex=row.get("sex", ""),
                age=row.get("age", ""),
            )
    return scan
