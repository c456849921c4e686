"""One reader per public chest X-ray layout, behind one interface and a registry (see base.py): each turns one
layout into candidate rows and counted drops.

May import: `labels`. (It sits below `config`, which validates reader names and options against the registry.)
"""

from . import (  # noqa: F401
    actualmed,
    class_folders,
    covid19_image_dataset,
    csv_table,
    darkcovidnet,
    figure1,
    hannover,
    ieee8023,
    kermany,
    radiography,
)
from .base import DROP_COLUMNS, MANIFEST_COLUMNS, READER_CLASSES, READER_OPTIONS, READERS, SourceError, SourceScan

__all__ = [
    "DROP_COLUMNS",
    "MANIFEST_COLUMNS",
    "READER_CLASSES",
    "READER_OPTIONS",
    "READERS",
    "SourceError",
    "SourceScan",
]
