"""infra/mlflow-server.sh: the tiny pipeline tracked on a shared MLflow server whose backend store is PostgreSQL."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from fixtures import write_ieee8023
from test_pipeline_e2e import free_port, server_env

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def postgres_installed() -> bool:
    """The server binaries infra/mlflow-server.sh looks for (pg_config alone comes with the client library)."""
    folders = list(Path("/usr/lib/postgresql").glob("*/bin"))
    if shutil.which("pg_config"):
        folders.append(Path(subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip()))
    return any((folder / "initdb").is_file() and (folder / "pg_ctl").is_file() for folder in folders)


def install_postgres() -> None:
    """PostgreSQL from Debian packages; fails the test with the reason when that is impossible here."""
    if postgres_installed():
        return
    if not shutil.which("apt-get"):
        pytest.fail("PostgreSQL is not installed and this machine has no apt-get to install it")
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if prefix and not shutil.which("sudo"):
        pytest.fail("PostgreSQL is not installed and installing it needs root (no sudo here)")
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"]):
        done = subprocess.run(prefix + command, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            pytest.fail(f"could not install PostgreSQL ({' '.join(command)}): {done.stderr.strip()[-800:]}")
    if not postgres_installed():
        pytest.fail("apt-get installed postgresql but no initdb was found under /usr/lib/postgresql")


def rest(uri: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{uri}/api/2.0/mlflow/{path}", data=data,
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def test_pipeline_tracks_to_mlflow_server_on_postgresql(tmp_path):
    install_postgres()
    state = tmp_path / "server"
    pg_port = free_port()
    env = server_env(MLFLOW_SERVER_HOME=str(state), MLFLOW_PORT=str(free_port()), PGPORT=str(pg_port),
                     PYTHON=sys.executable)  # fmt: skip
    start = subprocess.run(["bash", "infra/mlflow-server.sh", "start"], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=300)  # fmt: skip
    pids = [int(p.read_text()) for p in state.glob("*.pid")]
    try:
        assert start.returncode == 0, start.stdout + start.stderr + _log(state)
        assert len(pids) == 2  # mlflow server and PostgreSQL, each stopped by its own PID below
        uri = re.search(r"MLFLOW_TRACKING_URI=(\S+)", start.stdout).group(1)

        write_ieee8023(tmp_path / "data", n_per_class=16)
        raw = yaml.safe_load((ROOT / "configs/tiny.yaml").read_text())
        raw["data"] |= {"root": str(tmp_path / "data"), "cache_dir": str(tmp_path / "cache")}
        config = tmp_path / "tiny.yaml"
        config.write_text(yaml.safe_dump(raw))
        run_env = env | {"COVID_XRAY_HOME": str(tmp_path / "home"), "MLFLOW_TRACKING_URI": uri}
        run = subprocess.run([sys.executable, "-m", "covid_xray.cli", "run", "--config", str(config)], cwd=ROOT,
                             env=run_env, capture_output=True, text=True, timeout=900)  # fmt: skip
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert not (tmp_path / "home" / "mlflow.db").exists()  # nothing went to the embedded store

        champion = rest(uri, "registered-models/alias?name=covid-xray-tiny&alias=champion")["model_version"]
        experiment = rest(uri, "experiments/get-by-name?experiment_name=covid-xray-training")["experiment"]
        runs = rest(uri, "runs/search", {"experiment_ids": [experiment["experiment_id"]], "max_results": 100})["runs"]
        variants = {tag["value"]: r["info"]["run_id"] for r in runs for tag in r["data"].get("tags", [])
                    if tag["key"] == "model.variant"}  # fmt: skip
        assert set(variants) == {"vgg16-tiny", "cnn-tiny"} and champion["run_id"] in variants.values()

        import psycopg2  # the runs are rows in PostgreSQL, not in a file store

        with psycopg2.connect(host="127.0.0.1", port=pg_port, user="mlflow", dbname="mlflow") as connection:
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM runs WHERE run_uuid = %s", (champion["run_id"],))
                assert cursor.fetchone()[0] == 1
    finally:
        stop = subprocess.run(["bash", "infra/mlflow-server.sh", "stop"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)  # fmt: skip
        assert stop.returncode == 0, stop.stderr
        deadline = time.time() + 30
        while any(alive(pid) for pid in pids) and time.time() < deadline:
            time.sleep(1)
        assert not any(alive(pid) for pid in pids), f"still running: {[p for p in pids if alive(p)]}"
        subprocess.run(["bash", "infra/mlflow-server.sh", "purge"], cwd=ROOT, env=env, capture_output=True, timeout=120)


def _log(state: Path) -> str:
    return "".join(f"\n--- {p.name}\n{p.read_text()[-2000:]}" for p in state.glob("*.log"))
