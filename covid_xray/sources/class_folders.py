"""Your own export, one sub-folder per class: <folder>/<class>/<image> (sub-folders below a class are read too).

Class folders are the project's class names (any case) unless the source config maps them (`labels`).
With `patient_pattern` the patient id is taken from each file name; without it every image is its own patient.
"""

from pathlib import Path

from .base import (
    CLASSES,
    IMAGE_SUFFIXES,
    SourceScan,
    compile_patient_pattern,
    label_lookup,
    patient_in,
    register,
    require_folder,
)
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
            else:
                scan.add(relative, label=label, finding=class_folder.name, patient_id=patient)
    return scan
