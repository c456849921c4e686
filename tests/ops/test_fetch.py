"""`data fetch` refuses what it must not touch, and says where to go instead (the DVC imports: tests/system)."""

from pathlib import Path

import pytest
from fixtures import ROOT

from covid_xray.ops.fetch import FetchError, fetch, relink


def project_without_the_store(tmp_path: Path) -> Path:
    (tmp_path / "project/data").mkdir(parents=True)
    (tmp_path / "project/data.dvc").write_text((ROOT / "data.dvc").read_text())  # imports ../shared/datasets
    return tmp_path / "project"


def test_store_fetch_away_from_the_team_store_points_to_the_public_sources(tmp_path):
    project = project_without_the_store(tmp_path)
    with pytest.raises(FetchError) as raised:
        fetch("store", project, echo=lambda line: None)
    assert raised.value.code == 2
    store = (project / "../shared/datasets").resolve()
    assert str(raised.value) == (
        f"the team data store that data.dvc imports ({store}) is not here; outside the team, fetch the public "
        "sources instead: covid-xray data fetch --from public"
    )
    assert not (project / "data/raw").exists()


def test_a_data_raw_folder_is_never_replaced(tmp_path):
    project = project_without_the_store(tmp_path)
    (project / "data/raw/hospital").mkdir(parents=True)
    (project / "data/raw/hospital/scan.png").write_bytes(b"\x89PNG")
    for origin in ("public", "store"):
        with pytest.raises(FetchError, match=r"^data/raw is a folder, not a link to data/store or data/public"):
            fetch(origin, project, echo=lambda line: None)
    assert (project / "data/raw/hospital/scan.png").read_bytes() == b"\x89PNG"


def test_relink_switches_data_raw_between_the_origins(tmp_path):
    project = project_without_the_store(tmp_path)
    for origin in ("store", "public"):
        (project / "data" / origin).mkdir()
        (project / "data" / origin / f"{origin}.txt").write_text(origin)
    relink("public", project)
    assert (project / "data/raw/public.txt").read_text() == "public"
    relink("store", project)
    assert (project / "data/raw/store.txt").read_text() == "store"
    assert str((project / "data/raw").readlink()) == "store"  # relative: the project can move
