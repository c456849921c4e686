"""Your own export, one sub-folder per class: <folder>/<class>/<image> (sub-folders below a class are read too).

Class folders are the project's class names (any case) unless the source config maps them (`labels`).
With `patient_pattern` the patient id is taken from each file name; without it every image is its own patient, except
a DICOM file, whose PatientID is used. A DICOM file's ViewPosition and Modality fill the manifest's view and modality
(lateral views and non-X-ray modalities are dropped with what the header says).
"""

from pathlib import Path

from .base import (
    CLASSES,
    IMAGE_SUFFIXES,
    SourceScan,
    compile_patient_pattern,
    label_lookup,
    modality_name,
    patient_in,
    register,
    require_folder,
    view_name,
)
from .dicom_tags import dicom_tags, looks_like_dicom
from .files import file_problem


@register("folder", classes=CLASSES, options=("labels", "patient_pattern"))
def read_class_folders(
    folder: Path,
    source: str = "folder",
    labels: dict[str, str | None] | None = None,
    patient_pattern: str | None = None,
) -> SourceScan:
    require_folder(folder)
    lookup = label_lookup(labels)
    pattern = compile_patient_pattern(patient_pattern) if patient_pattern else None
    scan = SourceScan(source, folder)
    entries = sorted(folder.iterdir())
    for path in entries:
        if not path.is_dir():
            scan.drop(path.name, file_problem(path) or "not inside a class folder")
    class_folders = [p for p in entries if p.is_dir()]
    if not class_folders:
        scan.drop(str(folder), f"no class folders (expected sub-folders named {sorted(lookup)})")
    for class_folder in class_folders:
        known = class_folder.name.strip().lower() in lookup
        label = lookup.get(class_folder.name.strip().lower())
        for path in sorted(class_folder.rglob("*")):
            if path.is_dir():  # rglob walks it
                continue
            relative = path.relative_to(folder).as_posix()
            problem = file_problem(path)  # a named pipe, a device, a link loop: counted with what it is
            if problem:
                scan.drop(relative, problem)
                continue
            patient = patient_in(pattern, path.name) if pattern else f"image-{Path(relative).with_suffix('')}"
            if not known:
                scan.drop(relative, f"class folder {class_folder.name!r} is not in labels {sorted(lookup)}")
            elif label is None:
                scan.drop(relative, f"class folder {class_folder.name!r} is not a project class")
            elif path.suffix.lower() not in IMAGE_SUFFIXES:
                scan.drop(relative, "not an image file name")
            elif patient is None:
                scan.drop(relative, f"file name does not match patient_pattern {patient_pattern!r}")
            elif looks_like_dicom(path):
                add_dicom(scan, path, relative, label, class_folder.name, patient if pattern else None)
            else:
                scan.add(relative, label=label, finding=class_folder.name, patient_id=patient)
    return scan


def add_dicom(scan: SourceScan, path: Path, relative: str, label: str, finding: str, patient: str | None) -> None:
    """A DICOM file with its header's view, modality and (without a patient_pattern) PatientID; a lateral view or a
    modality other than X-ray is dropped with what the header says."""
    tags, own = dicom_tags(path), f"image-{Path(relative).with_suffix('')}"
    if tags is None:  # unreadable: ingest's decode drops it with the reason
        scan.add(relative, label=label, finding=finding, patient_id=patient or own)
        return
    view, modality = view_name(tags.view), modality_name(tags.modality)
    if view is None:
        scan.drop(relative, f"not a frontal view (DICOM ViewPosition {tags.view!r})")
    elif modality is None:
        scan.drop(relative, f"not an X-ray (DICOM Modality {tags.modality!r})")
    else:
        patient_id = patient or tags.patient_id or own
        scan.add(
            relative,
            label=label,
            finding=finding,
            patient_id=patient_id,
            view=view,
            modality=modality,
            sex=tags.sex,
            age=tags.age,
        )
