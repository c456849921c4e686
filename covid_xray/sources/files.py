"""What a path is, and why it cannot be read as an image file: one check for every reader, ingest, `predict` and the
site tools, so a named pipe, a device, a folder, a link loop or an unreadable file is named as what it is.

It looks with `os.stat` only: nothing is opened, so a named pipe (FIFO) never blocks the check."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

KINDS = (
    (stat.S_ISDIR, "not a file: a folder"),
    (stat.S_ISFIFO, "not a regular file: a named pipe (FIFO)"),
    (stat.S_ISCHR, "not a regular file: a character device"),
    (stat.S_ISBLK, "not a regular file: a block device"),
    (stat.S_ISSOCK, "not a regular file: a socket"),
)


def file_problem(path: str | Path) -> str | None:
    """Why `path` cannot be read as a regular file, or None when it can."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return f"broken symbolic link (to {os.readlink(path)})" if os.path.islink(path) else "file not found"
    except PermissionError:
        return "permission denied (a folder on the way cannot be entered)"
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "symbolic link loop"
        return f"cannot read the file ({error.strerror or error})"
    for is_kind, problem in KINDS:
        if is_kind(mode):
            return problem
    if not stat.S_ISREG(mode):
        return "not a regular file"
    if not os.access(path, os.R_OK):
        return "permission denied (the file is not readable)"
    return None
