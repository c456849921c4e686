"""The one file check every reader, ingest and `predict` use: each kind of path named as what it is, without opening
it (a named pipe would block a read)."""

import os
import socket
from pathlib import Path

import pytest
from fixtures import save, write_darkcovidnet, write_ieee8023, xray_like

from covid_xray.sources import READERS, SourceError
from covid_xray.sources.files import file_problem


def test_each_kind_of_path_is_named(tmp_path: Path):
    save(xray_like(0, "covid"), tmp_path / "good.png")
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "folder.png").mkdir()
    os.symlink(tmp_path / "loop.png", tmp_path / "loop.png")
    os.symlink(tmp_path / "nowhere.png", tmp_path / "broken.png")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "socket.png"))
        assert file_problem(tmp_path / "socket.png") == "not a regular file: a socket"
    assert file_problem(tmp_path / "good.png") is None
    assert file_problem(tmp_path / "pipe.png") == "not a regular file: a named pipe (FIFO)"
    assert file_problem(tmp_path / "folder.png") == "not a file: a folder"
    assert file_problem(tmp_path / "loop.png") == "symbolic link loop"
    assert file_problem(tmp_path / "broken.png") == f"broken symbolic link (to {tmp_path / 'nowhere.png'})"
    assert file_problem(tmp_path / "missing.png") == "file not found"
    assert file_problem("/dev/null") == "not a regular file: a character device"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file: no permission error to provoke")
def test_an_unreadable_file_is_a_permission_problem_not_a_corrupt_image(tmp_path: Path):
    path = save(xray_like(0, "covid"), tmp_path / "locked.png")
    path.chmod(0)
    assert file_problem(path) == "permission denied (the file is not readable)"


def test_special_files_in_a_class_folder_are_counted_in_the_drop_table_with_what_they_are(tmp_path: Path):
    folder = write_darkcovidnet(tmp_path)
    covid = next(p for p in folder.rglob("*") if p.is_dir() and p.name.lower().startswith("covid"))
    os.mkfifo(covid / "pipe.png")
    os.symlink(covid / "loop.png", covid / "loop.png")
    mine = tmp_path / "mine"
    save(xray_like(1, "covid"), mine / "covid" / "a.png")
    save(xray_like(2, "normal"), mine / "stray.png")
    os.mkfifo(mine / "covid" / "pipe.png")
    os.symlink(mine / "normal", mine / "normal")  # a class folder that is a link to itself
    for scan, prefix in (
        (READERS["darkcovidnet"](folder, "darkcovidnet"), f"{covid.relative_to(folder)}/"),
        (READERS["folder"](mine, "mine"), "covid/"),
    ):
        drops = {d["item"]: d["reason"] for d in scan.drops}
        assert drops[f"{prefix}pipe.png"] == "not a regular file: a named pipe (FIFO)"
        loop = f"{prefix}loop.png" if scan.source == "darkcovidnet" else "normal"
        assert drops[loop] == "symbolic link loop"
    assert drops["stray.png"] == "not inside a class folder"


def test_a_metadata_table_that_is_a_pipe_or_a_folder_is_named_without_blocking(tmp_path: Path):
    folder = write_ieee8023(tmp_path)
    (folder / "metadata.csv").unlink()
    os.mkfifo(folder / "metadata.csv")  # reading it would wait for a writer forever
    with pytest.raises(SourceError, match=r"metadata file .*metadata\.csv: not a regular file: a named pipe \(FIFO\)"):
        READERS["ieee8023"](folder, "ieee8023")
    (folder / "metadata.csv").unlink()
    (folder / "metadata.csv").mkdir()
    with pytest.raises(SourceError, match=r"metadata file .*metadata\.csv: not a file: a folder"):
        READERS["ieee8023"](folder, "ieee8023")
