"""ieee8023/covid-chestxray-dataset: metadata.csv + images/ (Cohen et al.).

Findings are free text ('COVID-19', 'COVID-19, ARDS', 'No Finding', 'SARS', ...) or, in later
versions, a hierarchy ('Pneumonia/Viral/COVID-19'). Only frontal X-ray views are kept.
"""

from pathlib import Path

from .base import SourceScan, is_frontal, read_metadata_csv, register, require_columns, require_folder

PNEUMONIA_FINDINGS = {
    "pneumonia",
    "sars",
    "mers-cov",
    "streptococcus",
    "pneumocystis",
    "klebsiella",
    "ards",
    "e.coli",
    "legionella",
    "varicella",
    "mycoplasma bacterial pneumonia",
    "lipoid",
    "bacterial",
    "influenza",
    "chlamydophila",
    "aspergillosis",
    "nocardia",
    "herpes",
    "mrsa",
    "staphylococcus",
    "fungal",
    "viral",
}


def label_of_finding(finding: str) -> str | None:
    text = finding.strip().lower()
    if not text or text == "todo":
        return None
    if "covid-19" in text:
        return "covid"
    if text in ("no finding", "normal"):
        return "normal"
    if text.startswith("pneumonia") or text in PNEUMONIA_FINDINGS:
        return "pneumonia"
    return None


@register("ieee8023", classes=("covid", "normal", "pneumonia"))
def read_ieee8023(folder: Path, source: str = "ieee8023") -> SourceScan:
    require_folder(folder)
    metadata = folder / "metadata.csv"
    frame, _ = read_metadata_csv(metadata)
    require_columns(frame, ["patientid", "finding", "view", "modality", "filename"], metadata)
    scan = SourceScan(source, folder)
    for number, row in enumerate(frame.to_dict("records"), start=1):
        where = f"metadata.csv row {number} ({row['filename']})"
        if row["modality"].lower() != "x-ray":
            scan.drop(where, f"modality {row['modality']!r} is not a chest X-ray")
        elif not is_frontal(row["view"]):
            scan.drop(where, f"view {row['view']!r} is not frontal")
        elif not row["finding"]:
            scan.drop(where, "blank finding")
        else:
            image_folder = row.get("folder") or "images"
            scan.add(
                str(Path(image_folder, row["filename"])),  # an absolute file name stays absolute: unsafe
                label=label_of_finding(row["finding"]),
                finding=row["finding"],
                patient_id=row["patientid"],
                view=row["view"],
                modality=row["modality"],
                where=where,
                origin=f"ieee8023:{Path(row['filename']).name}",  # the name others re-publish it under
                sex=row.get("sex", ""),
                age=row.get("age", ""),
            )
    return scan
