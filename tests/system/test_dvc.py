"""The documented data command materializes the team store on a fresh clone at the version data.dvc records, and
links data/raw (the configs' data root) to it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DVC = str(Path(sys.executable).with_name("dvc"))


def run(*args, cwd):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZENML_", "MLFLOW_"))}
    env |= {"DVC_NO_ANALYTICS": "1", "COVID_XRAY_HOME": str(Path(cwd).parent / "home")}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_fresh_clone_materializes_data_raw_with_one_command(tmp_path: Path, shared_datasets: Path):
    # a clone with the team data store beside it, as on a developer's machine or in CI
    (tmp_path / "shared").symlink_to(shared_datasets.parent)
    assert run("git", "clone", "-q", str(ROOT), str(tmp_path / "clone"), cwd=tmp_path).returncode == 0
    clone = tmp_path / "clone"
    result = run(sys.executable, "-m", "covid_xray.cli", "data", "fetch", "--from", "store", cwd=clone)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "data/raw -> data/store"
    recorded = yaml.safe_load((clone / "data.dvc").read_text())["outs"][0]
    assert (clone / "data/raw").resolve() == (clone / "data/store").resolve()
    files = [p for p in (clone / "data/raw").rglob("*") if p.is_file()]
    assert len(files) == recorded["nfiles"] and sum(p.stat().st_size for p in files) == recorded["size"]
    assert run("git", "status", "--porcelain", cwd=clone).stdout == ""  # same version as recorded, link ignored
    status = run(DVC, "status", "data.dvc", cwd=clone)
    assert status.returncode == 0 and "up to date" in status.stdout
