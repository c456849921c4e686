"""infra/mlflow-server.sh: the tiny pipeline tracked on a shared MLflow server whose backend store is PostgreSQL,
and the promotion gate's alias moves raced against that server."""

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from fixtures import write_ieee8023
from servers import free_port, server_env

ROOT = Path(__file__).resolve().parents[2]
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
    for command in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"],
    ):
        done = subprocess.run(prefix + command, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            pytest.fail(f"could not install PostgreSQL ({' '.join(command)}): {done.stderr.strip()[-800:]}")
    if not postgres_installed():
        pytest.fail("apt-get installed postgresql but no initdb was found under /usr/lib/postgresql")


def rest(uri: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"{uri}/api/2.0/mlflow/{path}", data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One MLflow server on PostgreSQL for the module (infra/mlflow-server.sh): (uri, PostgreSQL port, env)."""
    install_postgres()
    state = tmp_path_factory.mktemp("mlflow-server") / "server"
    pg_port = free_port()
    env = server_env(
        MLFLOW_SERVER_HOME=str(state), MLFLOW_PORT=str(free_port()), PGPORT=str(pg_port), PYTHON=sys.executable
    )
    start = subprocess.run(
        ["bash", "infra/mlflow-server.sh", "start"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    pids = [int(p.read_text()) for p in state.glob("*.pid")]
    try:
        assert start.returncode == 0, start.stdout + start.stderr + _log(state)
        assert len(pids) == 2  # mlflow server and PostgreSQL, each stopped by its own PID below
        yield re.search(r"MLFLOW_TRACKING_URI=(\S+)", start.stdout).group(1), pg_port, env
    finally:
        stop = subprocess.run(
            ["bash", "infra/mlflow-server.sh", "stop"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert stop.returncode == 0, stop.stderr
        deadline = time.time() + 30
        while any(alive(pid) for pid in pids) and time.time() < deadline:
            time.sleep(1)
        assert not any(alive(pid) for pid in pids), f"still running: {[p for p in pids if alive(p)]}"
        subprocess.run(["bash", "infra/mlflow-server.sh", "purge"], cwd=ROOT, env=env, capture_output=True, timeout=120)


def test_pipeline_tracks_to_mlflow_server_on_postgresql(server, tmp_path):
    uri, pg_port, env = server
    write_ieee8023(tmp_path / "data", n_per_class=16)
    raw = yaml.safe_load((ROOT / "configs/tiny.yaml").read_text())
    raw["data"] |= {"root": str(tmp_path / "data"), "cache_dir": str(tmp_path / "cache")}
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(raw))
    run_env = env | {"COVID_XRAY_HOME": str(tmp_path / "home"), "MLFLOW_TRACKING_URI": uri}
    run = subprocess.run(
        [sys.executable, "-m", "covid_xray.cli", "run", "--config", str(config)],
        cwd=ROOT,
        env=run_env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert not (tmp_path / "home" / "mlflow.db").exists()  # nothing went to the embedded store

    champion = rest(uri, "registered-models/alias?name=covid-xray-tiny&alias=champion")["model_version"]
    experiment = rest(uri, "experiments/get-by-name?experiment_name=covid-xray-training")["experiment"]
    runs = rest(uri, "runs/search", {"experiment_ids": [experiment["experiment_id"]], "max_results": 100})["runs"]
    variants = {
        tag["value"]: r["info"]["run_id"]
        for r in runs
        for tag in r["data"].get("tags", [])
        if tag["key"] == "model.variant"
    }
    assert set(variants) == {"vgg16-tiny", "cnn-tiny"} and champion["run_id"] in variants.values()

    import psycopg2  # the runs are rows in PostgreSQL, not in a file store

    password = (Path(env["MLFLOW_SERVER_HOME"]) / "postgres.password").read_text().strip()
    assert stat.S_IMODE((Path(env["MLFLOW_SERVER_HOME"]) / "postgres.password").stat().st_mode) == 0o600
    with pytest.raises(psycopg2.OperationalError, match="password"):  # scram-sha-256: no login without it
        psycopg2.connect(host="127.0.0.1", port=pg_port, user="mlflow", dbname="mlflow", password="wrong")
    with (
        psycopg2.connect(
            host="127.0.0.1", port=pg_port, user="mlflow", dbname="mlflow", password=password
        ) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute("SELECT count(*) FROM runs WHERE run_uuid = %s", (champion["run_id"],))
        assert cursor.fetchone()[0] == 1


@pytest.fixture
def registry(server, monkeypatch):
    """An MLflow client of the shared server, with the module's experiment for gate tests."""
    import mlflow

    uri = server[0]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("gate-concurrency")
    yield mlflow.MlflowClient(uri)
    mlflow.set_tracking_uri(None)


def test_two_promotions_at_the_same_moment_end_with_one_champion_and_both_recorded(registry):
    """Both candidates beat the champion; the lease lets one move the aliases, compare-and-set refuses the other."""
    import threading

    from registry_runs import GATE, Scorer, pipeline_run, wrong

    from covid_xray.registry.aliases import history
    from covid_xray.registry.promote import promote_run

    gate = GATE.model_copy(update={"model_name": "race"})
    old, _ = promote_run(registry, pipeline_run(wrong(60)), gate)
    candidates = [pipeline_run(wrong(10, 1)), pipeline_run(wrong(12, 2))]
    start, results = threading.Barrier(2), {}

    def promote(run_id):
        start.wait()
        results[run_id] = promote_run(registry, run_id, gate, scorer=Scorer(wrong(60)))

    threads = [threading.Thread(target=promote, args=(run_id,)) for run_id in candidates]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert len(results) == 2, "a promotion did not finish"
    promoted = [version for version, decision in results.values() if decision.promote]
    refused = [decision for _, decision in results.values() if not decision.promote]
    assert len(promoted) == 1 and len(refused) == 1
    assert "compare-and-set" in refused[0].reasons[-1]
    assert str(registry.get_model_version_by_alias("race", "champion").version) == promoted[0]
    assert str(registry.get_model_version_by_alias("race", "previous").version) == old
    events = history(registry, "race")
    assert sorted(e["action"] for e in events[1:]) == ["promote", "rejected"]
    assert {e["candidate"] for e in events[1:]} == {version for version, _ in results.values()}
    assert not registry.search_registered_models("name = 'race.lease'")  # released


CRASHING_ROLLBACK = """
import os, sys
from mlflow import MlflowClient
from covid_xray.config import PromotionConfig
from covid_xray.registry.aliases import PREVIOUS, rollback

real = MlflowClient.set_registered_model_alias
def set_alias(self, name, alias, version):
    if alias == PREVIOUS:
        os._exit(9)  # killed between the two writes: no cleanup, the lease stays taken
    return real(self, name, alias, version)
MlflowClient.set_registered_model_alias = set_alias
rollback(MlflowClient(), sys.argv[1], PromotionConfig(model_name=sys.argv[1], lease_seconds=3))
"""


def test_rollback_killed_between_its_two_writes_leaves_a_valid_champion_and_rollback_target(registry, server):
    from registry_runs import GATE, Scorer, pipeline_run, wrong

    from covid_xray.registry.aliases import finish_pending, history, rollback_target
    from covid_xray.registry.promote import promote_run

    gate = GATE.model_copy(update={"model_name": "crash"})
    first, _ = promote_run(registry, pipeline_run(wrong(60)), gate)
    second, _ = promote_run(registry, pipeline_run(wrong(10, 1)), gate, scorer=Scorer(wrong(60)))
    env = server[2] | {"MLFLOW_TRACKING_URI": server[0], "PYTHONPATH": str(ROOT)}
    killed = subprocess.run(
        [sys.executable, "-c", CRASHING_ROLLBACK, "crash"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == 9, killed.stderr[-2000:]

    def version(alias):
        return str(registry.get_model_version_by_alias("crash", alias).version)

    assert version("champion") == first  # the rollback's first write: the bad model is out of service
    assert rollback_target(registry, "crash") == second  # from the journal, though `previous` still says first
    assert registry.search_registered_models("name = 'crash.lease'")  # the killed process still "holds" it
    event = finish_pending(registry, "crash", gate)  # waits for the lease to expire, then completes the move
    assert (version("champion"), version("previous")) == (first, second)
    assert event["action"] == "rollback" and "completed by" in event["reasons"][-1]
    assert [e["action"] for e in history(registry, "crash")] == ["promote", "promote", "rollback"]


def _log(state: Path) -> str:
    return "".join(f"\n--- {p.name}\n{p.read_text()[-2000:]}" for p in state.glob("*.log"))
