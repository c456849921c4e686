"""One reader per public chest X-ray layout, behind one interface (see base.py)."""

from . import actualmed, covid19_image_dataset, darkcovidnet, figure1, ieee8023, kermany, radiography  # noqa: F401
from .base import DROP_COLUMNS, MANIFEST_COLUMNS, READER_CLASSES, READERS, SourceError, SourceScan

__all__ = ["DROP_COLUMNS", "MANIFEST_COLUMNS", "READER_CLASSES", "READERS", "SourceError", "SourceScan"]
