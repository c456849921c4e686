"""One reader per public chest X-ray layout, behind one interface (see base.py)."""

from . import (  # noqa: F401
    actualmed, class_folders, covid19_image_dataset, csv_table, darkcovidnet, figure1, hannover, ieee8023, kermany,
    radiography,
)  # fmt: skip
from .base import DROP_COLUMNS, MANIFEST_COLUMNS, READER_CLASSES, READER_OPTIONS, READERS, SourceError, SourceScan

__all__ = ["DROP_COLUMNS", "MANIFEST_COLUMNS", "READER_CLASSES", "READER_OPTIONS", "READERS", "SourceError",
           "SourceScan"]  # fmt: skip
