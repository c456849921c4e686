"""The Docker stack for real: images built from a locally made base, infra/docker-compose.yml up (PostgreSQL, S3,
MLflow with basic auth), the ZenML stack of infra/stacks/docker.yaml registered, the tiny pipeline run with every
step in its own container, and the results read back through MLflow's REST API and S3.

Needs a Docker daemon: when none answers, the module installs Debian's docker.io, docker-compose and debootstrap
(as root, with apt-get) and starts dockerd itself, stopping it by its PID at the end. Where that is impossible
(not root, no apt-get) the module is skipped with the reason, unless COVID_XRAY_DOCKER_TESTS=1 (CI) makes it fail.
"""

import base64
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from fixtures import as_dicom_12bit, real_images, write_ieee8023
from servers import first_answer, free_port, image_request, server_env

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
REQUIRED = os.environ.get("COVID_XRAY_DOCKER_TESTS") == "1"
PACKAGES = {
    "docker": "docker.io",
    "dockerd": "docker.io",
    "docker-compose": "docker-compose",
    "debootstrap": "debootstrap",
}
SECRETS = (
    "POSTGRES_PASSWORD",
    "S3_ACCESS_KEY_ID",
    "S3_SECRET_ACCESS_KEY",
    "MLFLOW_ADMIN_PASSWORD",
    "MLFLOW_FLASK_SECRET_KEY",
)
LABEL = "covid-xray.stack=docker-test"


def unavailable(reason: str):
    if REQUIRED:
        pytest.fail(f"COVID_XRAY_DOCKER_TESTS=1 but {reason}")
    pytest.skip(f"{reason} (set COVID_XRAY_DOCKER_TESTS=1 to make this an error)")


def docker_answers() -> bool:
    return (
        shutil.which("docker") is not None
        and subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode == 0
    )


def install_packages() -> None:
    missing = sorted(
        {package for tool, package in PACKAGES.items() if not (shutil.which(tool) or Path("/usr/sbin", tool).exists())}
    )
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        unavailable(f"{', '.join(missing)} missing and installing them needs root and apt-get")
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
    ):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            unavailable(f"could not install {missing} ({' '.join(command)}): {done.stderr.strip()[-600:]}")


@pytest.fixture(scope="module")
def docker(tmp_path_factory):
    """A Docker daemon: the running one, or dockerd started here (and stopped by its PID afterwards)."""
    if docker_answers():
        yield
        return
    install_packages()
    if os.geteuid() != 0:
        unavailable("no Docker daemon answers and starting dockerd needs root")
    log = tmp_path_factory.mktemp("dockerd") / "dockerd.log"
    dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
    with open(log, "w") as out:
        daemon = subprocess.Popen([dockerd], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 120
        while not docker_answers():
            if daemon.poll() is not None or time.time() > deadline:
                pytest.fail(f"dockerd did not start: {log.read_text()[-2000:]}")
            time.sleep(1)
        yield
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(timeout=30)


def containers(*filters: str) -> list[str]:
    command = ["docker", "ps", "-a", "-q", *[arg for f in filters for arg in ("--filter", f)]]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()


def compose(env: dict, *args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "infra/compose.sh", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def stack(docker, tmp_path_factory):
    """infra/docker-compose.yml up on free loopback ports with a fresh env file; yields the client variables."""
    state = tmp_path_factory.mktemp("compose")
    project = f"covid-xray-test-{os.getpid()}"
    env = server_env(
        COVID_XRAY_ENV_FILE=str(state / ".env"),
        COMPOSE_PROJECT_NAME=project,
        MLFLOW_PORT=str(free_port()),
        S3_PORT=str(free_port()),
        S3_BUCKET="covid-xray-test",
    )
    for name in SECRETS:
        env.pop(name, None)
    started = time.time()
    up = compose(env, "up")
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-5000:]
        print(f"compose up (images built as needed): {time.time() - started:.0f} s")
        printed = compose(env, "env")
        assert printed.returncode == 0, printed.stderr
        client = dict(line.removeprefix("export ").split("=", 1) for line in printed.stdout.splitlines())
        yield {"env": env, "client": client, "state": state, "project": project}
    finally:
        down = compose(env, "purge", timeout=300)
        assert down.returncode == 0, down.stderr[-3000:]
        assert containers(f"label=com.docker.compose.project={project}") == []
        assert containers(f"label={LABEL}") == []


def rest(client: dict, path: str, body: dict | None = None, auth: tuple[str, str] | None = None) -> dict:
    """MLflow's REST API as the admin of the compose server (or with `auth`)."""
    user, password = auth or (client["MLFLOW_TRACKING_USERNAME"], client["MLFLOW_TRACKING_PASSWORD"])
    request = urllib.request.Request(
        f"{client['MLFLOW_TRACKING_URI']}/api/2.0/mlflow/{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers={
            "Content-Type": "application/json",
            "Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode(),
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_mlflow_refuses_requests_without_a_login(stack):
    client = stack["client"]
    url = f"{client['MLFLOW_TRACKING_URI']}/api/2.0/mlflow/experiments/search?max_results=10"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=30)
    assert refused.value.code == 401
    with pytest.raises(urllib.error.HTTPError) as wrong:
        rest(client, "experiments/search?max_results=10", auth=(client["MLFLOW_TRACKING_USERNAME"], "not-the-password"))
    assert wrong.value.code == 401
    assert "experiments" in rest(client, "experiments/search?max_results=10")
    with urllib.request.urlopen(f"{client['MLFLOW_TRACKING_URI']}/health", timeout=30) as health:  # for probes
        assert health.status == 200


def test_services_are_published_on_loopback_only(stack):
    published = {}
    for service in ("postgres", "s3", "mlflow"):
        (container,) = containers(
            f"label=com.docker.compose.project={stack['project']}", f"label=com.docker.compose.service={service}"
        )
        ports = json.loads(
            subprocess.run(
                ["docker", "inspect", "-f", "{{json .NetworkSettings.Ports}}", container],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        published[service] = sorted(
            f"{b['HostIp']}:{b['HostPort']}" for bound in ports.values() if bound for b in bound
        )
    env = stack["env"]
    assert published == {
        "postgres": [],
        "s3": [f"127.0.0.1:{env['S3_PORT']}"],
        "mlflow": [f"127.0.0.1:{env['MLFLOW_PORT']}"],
    }


def test_secrets_are_generated_on_first_start_and_never_in_the_repository(stack):
    env_file = stack["state"] / ".env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if line and not line.startswith("#"))
    assert set(values) == set(SECRETS) and all(len(value) >= 24 for value in values.values())
    for value in values.values():  # not in any tracked file
        found = subprocess.run(["git", "grep", "-F", "-l", "-e", value], cwd=ROOT, capture_output=True, text=True)
        assert found.returncode == 1 and found.stdout == "", f"a generated secret is in {found.stdout}"
    assert subprocess.run(["git", "check-ignore", "-q", "infra/.env"], cwd=ROOT).returncode == 0


def docker_run_config(tmp_path: Path) -> Path:
    """configs/tiny.yaml on the Docker stack: configs/docker.yaml's execution section, the test data mounted."""
    data = tmp_path / "data"
    write_ieee8023(data, n_per_class=16)
    raw = yaml.safe_load((ROOT / "configs/tiny.yaml").read_text())
    cache = tmp_path / "cache"  # written by ingest_data, read by the later steps: shared by their containers
    raw["data"] |= {"root": str(data), "cache_dir": str(cache)}
    raw["execution"] = yaml.safe_load((ROOT / "configs/docker.yaml").read_text())["execution"]
    run_args = raw["execution"]["orchestrator"]["run_args"]
    run_args["labels"] = dict([LABEL.split("=")])
    run_args["volumes"] = {str(data): {"bind": str(data), "mode": "ro"}, str(cache): {"bind": str(cache), "mode": "rw"}}
    config = tmp_path / "docker-tiny.yaml"
    config.write_text(yaml.safe_dump(raw))
    return config


@pytest.fixture(scope="module")
def tiny_run(stack, tmp_path_factory):
    """The step image built, the Docker ZenML stack registered, and the tiny pipeline run on it: (the environment
    that reaches the compose MLflow and S3, the finished `covid-xray run`, the containers' start events)."""
    env, client = stack["env"], stack["client"]
    tmp_path = tmp_path_factory.mktemp("tiny-run")
    started = time.time()
    built = subprocess.run(
        ["bash", "infra/docker/build.sh", "step"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=2400
    )
    assert built.returncode == 0, built.stderr[-3000:]
    print(f"step image: {time.time() - started:.0f} s ({built.stdout.strip()})")
    run_env = (
        env
        | client
        | {
            "COVID_XRAY_HOME": str(tmp_path / "home"),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
    )
    registered = subprocess.run(
        [sys.executable, "infra/register_stack.py", "infra/stacks/docker.yaml"],
        cwd=ROOT,
        env=run_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert registered.returncode == 0, registered.stderr[-3000:]
    # The components hold references only: no credential value in ZenML's component configuration.
    script = (
        "from covid_xray.ops.stack import prepare_environment, zenml_client; prepare_environment(); import json; "
        "print(json.dumps([c.configuration for c in zenml_client().list_stack_components(size=100).items]))"
    )
    shown = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=300
    )
    for name in ("MLFLOW_TRACKING_PASSWORD", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"):
        assert client[name] not in shown.stdout
    assert "{{covid_xray_mlflow_shared.password}}" in shown.stdout

    config = docker_run_config(tmp_path)
    # Streamed while the run lasts: dockerd keeps only its last 256 events (health checks fill that quickly).
    watcher = subprocess.Popen(
        ["docker", "events", "--filter", f"label={LABEL}", "--filter", "event=start", "--format", "{{json .}}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    started = time.time()
    try:
        run = subprocess.run(
            [sys.executable, "-m", "covid_xray.cli", "run", "--config", str(config)],
            cwd=ROOT,
            env=run_env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
    finally:
        time.sleep(2)
        watcher.terminate()
        events = watcher.communicate(timeout=60)[0].splitlines()
    print(f"tiny pipeline in containers: {time.time() - started:.0f} s")
    return run_env, run, events, tmp_path


def test_tiny_pipeline_runs_every_step_in_a_container_and_lands_in_mlflow_and_s3(stack, tiny_run):
    client = stack["client"]
    run_env, run, events, tmp_path = tiny_run
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-6000:]
    assert not (tmp_path / "home" / "mlflow.db").exists()  # nothing went to the embedded store

    # One container per step, each started from the project's image.
    steps = [
        "ingest_data",
        "prepare_data",
        "validate_data",
        "train_vgg16-tiny",
        "train_cnn-tiny",
        "evaluate_vgg16-tiny",
        "evaluate_cnn-tiny",
        "promote_model",
    ]
    images = [json.loads(event)["from"] for event in events]
    assert images == ["covid-xray/step:cpu"] * len(steps), images
    log = re.sub(r"\x1b\[[0-9;]*m", "", run.stdout + run.stderr)
    for step in steps:
        assert f"Running step {step} in Docker" in log
    assert containers(f"label={LABEL}") == []  # removed after each step

    experiment = rest(client, "experiments/get-by-name?experiment_name=covid-xray-training")["experiment"]
    runs = rest(client, "runs/search", {"experiment_ids": [experiment["experiment_id"]], "max_results": 100})["runs"]
    variants = {tag["value"]: r for r in runs for tag in r["data"].get("tags", []) if tag["key"] == "model.variant"}
    assert set(variants) == {"vgg16-tiny", "cnn-tiny"}
    for variant in variants.values():
        metrics = {m["key"] for m in variant["data"].get("metrics", [])}
        assert any(key.startswith("test_") for key in metrics), metrics
    champion = rest(client, "registered-models/alias?name=covid-xray-tiny&alias=champion")["model_version"]
    assert champion["run_id"] in {r["info"]["run_id"] for r in variants.values()}

    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=client["S3_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id=client["S3_ACCESS_KEY_ID"],
        aws_secret_access_key=client["S3_SECRET_ACCESS_KEY"],
    )
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=client["S3_BUCKET"])
        for o in page.get("Contents", [])
    ]
    model_id = champion["source"].rsplit("/", 1)[-1]  # models:/m-... : the logged model of the champion
    assert any(model_id in key and key.endswith("MLmodel") for key in keys), (champion["source"], keys[:20])
    assert any(key.startswith("zenml/") for key in keys)  # the steps' artifacts


def post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def test_the_champions_serving_image_answers_a_png_and_a_dicom_and_refuses_garbage(tiny_run, shared_datasets, tmp_path):
    """`covid-xray build-image` on the champion of the tiny run (registry in the compose MLflow, artifacts in S3), the
    image run with only 127.0.0.1 published: a real PNG and the same picture as a 12-bit MONOCHROME1 DICOM answered
    alike, with status and OOD fields; garbage refused with a 4xx and its reason; answers still after it."""
    run_env, run, _, _ = tiny_run
    assert run.returncode == 0, run.stderr[-3000:]
    tag = f"covid-xray/serve:test-{os.getpid()}"
    name = f"covid-xray-serve-test-{os.getpid()}"
    started = time.time()
    built = subprocess.run(
        [sys.executable, "-m", "covid_xray.cli", "build-image", "--model-name", "covid-xray-tiny", "--tag", tag],
        cwd=ROOT,
        env=run_env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-3000:]
    assert f"Built {tag}" in built.stdout and "covid-xray-tiny version 1" in built.stdout
    print(f"serving image: {time.time() - started:.0f} s")
    png = next(p for p in real_images(shared_datasets, per_source=8) if p.suffix == ".png")
    dicom = as_dicom_12bit(png, tmp_path / "same.dcm")
    port = free_port()
    server = subprocess.Popen(
        ["docker", "run", "--rm", "--name", name, "-p", f"127.0.0.1:{port}:8080", tag],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/invocations"
    try:
        answers = first_answer(server, image_request(url, [png, dicom]), 300, "the serving image")["predictions"]
        assert [a["status"] for a in answers] == ["ok", "ok"], answers
        assert abs(answers[0]["covid_probability"] - answers[1]["covid_probability"]) <= 1e-4, answers
        assert answers[0]["class"] == answers[1]["class"] and answers[0]["class"] in ("covid", "non_covid")
        assert {"out_of_distribution", "ood_distance", "ood_threshold", "threshold"} <= set(answers[0])
        status, refused = post(url, b"this is not JSON")
        assert status == 400 and refused["error_code"] == "BAD_REQUEST" and refused["message"], refused
        text = base64.b64encode(b"GET / HTTP/1.1").decode()
        body = json.dumps({"dataframe_split": {"columns": ["image"], "data": [[text]]}}).encode()
        status, answer = post(url, body)
        (row,) = answer["predictions"]
        assert status == 200 and row["status"] == "refused" and "not a readable image" in row["reason"], row
        status, refused = post(url, b"A" * (40 * 2**20))  # over the image's default 32 MB limit
        assert status == 413 and "over this server's limit of 32 MB" in refused["message"]
        (again,) = first_answer(server, image_request(url, [png]), 60, "the serving image after garbage")["predictions"]
        numbers = {"covid_probability", "p_covid", "p_non_covid", "ood_distance"}  # a batch of 1, not 2: float rounding
        assert {k: v for k, v in again.items() if k not in numbers} == {
            k: v for k, v in answers[0].items() if k not in numbers
        }
        assert all(abs(again[k] - answers[0][k]) <= 1e-4 for k in numbers), (again, answers[0])
        ports = subprocess.run(["docker", "port", name], capture_output=True, text=True, check=True).stdout.split()
        assert ports == ["8080/tcp", "->", f"127.0.0.1:{port}"], ports
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=120)
        server.wait(timeout=120)
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, timeout=120)
