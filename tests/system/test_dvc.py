"""The documented DVC command materializes data/raw on a fresh clone at the version data.dvc records."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DVC = str(Path(sys.executable).with_name("dvc"))


def run(*args, cwd):
    env = os.environ | {"DVC_NO_ANALYTICS": "1"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_fresh_clone_materializes_data_raw_with_one_command(tmp_path: Path, shared_datasets: Path):
    # a clone with the team data store beside it, as on a developer's machine or in CI
    (tmp_path / "shared").symlink_to(shared_datasets.parent)
    assert run("git", "clone", "-q", str(ROOT), str(tmp_path / "clone"), cwd=tmp_path).returncode == 0
    clone = tmp_path / "clone"
    result = run(DVC, "update", "data.dvc", cwd=clone)
    assert result.returncode == 0, result.stderr
    recorded = yaml.safe_load((clone / "data.dvc").read_text())["outs"][0]
    files = [p for p in (clone / "data/raw").rglob("*") if p.is_file()]
    assert len(files) == recorded["nfiles"] and sum(p.stat().st_size for p in files) == recorded["size"]
    assert run("git", "diff", "--exit-code", "data.dvc", cwd=clone).returncode == 0  # same version as recorded
    status = run(DVC, "status", "data.dvc", cwd=clone)
    assert status.returncode == 0 and "up to date" in status.stdout
