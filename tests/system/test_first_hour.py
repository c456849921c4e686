"""A new user's first hour: after a run whose gate refused its candidate (as the default run's does), the README's
"After the run" commands work as written: compare, predict and card with the challenger, serve answering a POST, the
UI answering, and nothing left running after SIGTERM to serve's or the UI's PID."""

import os
import re
import shlex
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from fixtures import write_ieee8023
from servers import alive, descendants, first_answer, free_port, image_request

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
SERVERS = {"serve", "ui"}  # commands that run until stopped


def readme_commands() -> list[list[str]]:
    """The `covid-xray` lines of the README's "After the run" block, split as a shell splits them, comments dropped."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## After the run\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def after_the_run(tmp_path_factory):
    """A project home after `covid-xray run` whose gate refused the candidate: one version, registered as challenger."""
    tmp = tmp_path_factory.mktemp("first-hour")
    write_ieee8023(tmp / "data", n_per_class=16)
    raw = yaml.safe_load((ROOT / "configs/tiny.yaml").read_text())
    raw["data"] |= {"root": str(tmp / "data"), "cache_dir": str(tmp / "cache")}
    # The README's commands name no config: the default model name, and a gate the tiny models cannot pass.
    raw["promotion"] |= {
        "model_name": "covid-xray",
        "min_accuracy": 1.0,
        "min_sensitivity": 1.0,
        "min_specificity": 1.0,
    }
    config = tmp / "strict.yaml"
    config.write_text(yaml.safe_dump(raw))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZENML_", "MLFLOW_"))}
    env |= {"COVID_XRAY_HOME": str(tmp / "home"), "PATH": "/usr/bin:/bin"}  # no activated venv, as on a fresh shell
    run = subprocess.run(
        [sys.executable, "-m", "covid_xray.cli", "run", "--config", str(config)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return env


def as_run_here(command: list[str]) -> list[str]:
    """The README's `.venv/bin/covid-xray` is this interpreter's covid-xray script."""
    assert command[0] == ".venv/bin/covid-xray", command
    return [str(Path(sys.executable).parent / "covid-xray"), *command[1:]]


def test_the_readme_names_compare_predict_card_serve_and_ui_with_the_challenger():
    names = [command[1] for command in readme_commands()]
    assert names == ["compare", "predict", "card", "serve", "ui"]
    assert all("--alias" in c and c[c.index("--alias") + 1] == "challenger" for c in readme_commands()[1:4])


def test_without_a_champion_predict_names_the_challenger_then_the_readme_commands_work(after_the_run):
    env = after_the_run
    image = next(c for c in readme_commands() if c[1] == "predict")[-1]
    assert (ROOT / image).is_file(), f"the README's example image {image} is not in ../shared"
    plain = subprocess.run(
        [*as_run_here([".venv/bin/covid-xray", "predict", image])], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert plain.returncode == 1
    assert plain.stderr.startswith("covid-xray: error: no champion yet: version 1 (")
    assert "use `--alias challenger`" in plain.stderr and "accuracy" in plain.stderr

    for command in readme_commands():
        if command[1] in SERVERS:
            continue
        done = subprocess.run(as_run_here(command), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (command, done.stderr[-2000:])
        if command[1] == "predict":
            assert re.match(rf"{re.escape(image)}\t(covid|normal)\tcovid_probability=0\.\d+", done.stdout), done.stdout
        if command[1] == "card":
            assert done.stdout.startswith("# Model card: covid-xray version 1 (@challenger)")
        if command[1] == "compare":
            assert "Promotion:" in done.stdout and "accuracy" in done.stdout.split("Promotion:")[1]
        assert "cudart_stub" not in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_the_readme_servers_answer_and_leave_nothing_behind_after_sigterm(after_the_run, name):
    env = after_the_run
    port = free_port()
    command = next(c for c in readme_commands() if c[1] == name)
    server = subprocess.Popen(
        [*as_run_here(command), "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    started: set[int] = set()
    try:
        if name == "serve":
            image = ROOT / next(c for c in readme_commands() if c[1] == "predict")[-1]
            request = image_request(f"http://127.0.0.1:{port}/invocations", [image])
            (answer,) = first_answer(server, request, 240, "covid-xray serve")["predictions"]
            assert answer["status"] == "ok" and answer["class"] in ("covid", "normal")
            oversized = urllib.request.Request(request.full_url, data=b"A" * (50 * 2**20), headers=request.headers)
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(oversized, timeout=60)  # noqa: S310 - the test's own loopback server
            assert refused.value.code == 413 and "over this server's limit" in refused.value.read().decode()
            (again,) = first_answer(server, request, 60, "covid-xray serve after a refused body")["predictions"]
            assert again == answer
        else:
            url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name?experiment_name=covid-xray-training"
            experiment = first_answer(server, url, 240, "covid-xray ui")["experiment"]
            assert {"key": "mlflow.experimentKind", "value": "custom_model_development"} in experiment["tags"]
        started = descendants(server.pid)
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=60)
    finally:
        started |= descendants(server.pid)
        left = [pid for pid in started if alive(pid)]
        for pid in [server.pid, *left]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert server.returncode == 0, err[-2000:]
    assert not left, f"left running after SIGTERM to covid-xray {name}: {left}"
    assert not [line for line in err.decode().splitlines() if "cudart_stub" in line or "Traceback" in line]
