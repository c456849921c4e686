"""infra/: stack recipes, cluster run settings and images, validated as far as possible without a cluster."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "infra"))

from register_stack import RecipeError, load_recipe, validate  # noqa: E402

from covid_xray.config import load_config  # noqa: E402

CLUSTER_ENV = {
    "KUBE_CONTEXT": "gpu-cluster",
    "ARTIFACT_BUCKET": "covid-xray-artifacts",
    "REGISTRY_URI": "registry.example.com/covid-xray",
    "MLFLOW_TRACKING_URI": "http://mlflow.example:5000",
}
# What `infra/compose.sh env` prints, with made-up values.
DOCKER_ENV = {
    "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000",
    "MLFLOW_TRACKING_USERNAME": "admin",
    "MLFLOW_TRACKING_PASSWORD": "pw-from-env",
    "S3_ENDPOINT_URL": "http://127.0.0.1:9000",
    "S3_BUCKET": "b",
    "S3_ACCESS_KEY_ID": "key-from-env",
    "S3_SECRET_ACCESS_KEY": "secret-from-env",
}


@pytest.mark.parametrize("recipe", ["local", "kubernetes", "kubeflow", "docker"])
def test_stack_recipes_validate_against_zenml_flavors(recipe):
    loaded = load_recipe(ROOT / f"infra/stacks/{recipe}.yaml", DOCKER_ENV if recipe == "docker" else CLUSTER_ENV)
    checked = validate(loaded, recipe)
    assert "orchestrator/" in " ".join(checked) and "experiment_tracker/" in " ".join(checked)
    if recipe == "docker":
        assert set(checked) == {
            "orchestrator/covid-xray-docker",
            "artifact_store/covid-xray-docker-s3",
            "image_builder/covid-xray-docker-builder",
            "experiment_tracker/covid-xray-mlflow-docker",
        }
    elif recipe != "local":
        assert {c.split("/")[0] for c in checked} >= {
            "orchestrator",
            "artifact_store",
            "container_registry",
            "image_builder",
            "experiment_tracker",
        }


def test_recipe_errors_name_what_is_wrong(tmp_path):
    with pytest.raises(RecipeError, match="set ARTIFACT_BUCKET, KUBE_CONTEXT"):
        load_recipe(ROOT / "infra/stacks/kubernetes.yaml", {"REGISTRY_URI": "r", "MLFLOW_TRACKING_URI": "http://m"})
    recipe = load_recipe(ROOT / "infra/stacks/kubernetes.yaml", CLUSTER_ENV)
    recipe["components"]["artifact_store"]["configuration"]["path"] = "/not/a/bucket"
    with pytest.raises(RecipeError, match="artifact_store 'covid-xray-s3'"):
        validate(recipe)
    recipe["components"]["artifact_store"] = {"name": "x", "flavor": "floppy-disk"}
    with pytest.raises(RecipeError, match="unknown flavor 'floppy-disk'"):
        validate(recipe)


def test_cluster_config_asks_for_a_gpu_node_in_settings_zenml_accepts():
    from zenml.config import DockerSettings, ResourceSettings
    from zenml.integrations.kubeflow.flavors.kubeflow_orchestrator_flavor import KubeflowOrchestratorSettings
    from zenml.integrations.kubernetes.flavors.kubernetes_orchestrator_flavor import KubernetesOrchestratorSettings

    from pipelines.settings import pipeline_settings, train_step_settings

    config = load_config(ROOT / "configs/cluster.yaml")
    step = train_step_settings(config)
    assert isinstance(step["resources"], ResourceSettings) and step["resources"].gpu_count == 1
    pod = KubernetesOrchestratorSettings(**train_step_settings(config)["orchestrator"]).pod_settings
    assert pod.tolerations[0]["key"] == "nvidia.com/gpu" and pod.node_selectors == {"nvidia.com/gpu.present": "true"}
    # ZenML 0.98's Kubeflow settings rebuild pod_settings from their legacy node_selectors/node_affinity keys and
    # drop the rest (README, "Scaling out"): on Kubeflow the GPU request comes from the resources settings.
    kubeflow = KubeflowOrchestratorSettings(**train_step_settings(config)["orchestrator"])
    assert kubeflow.pod_settings.tolerations == []
    docker = pipeline_settings(config)["docker"]
    assert isinstance(docker, DockerSettings) and Path(docker.dockerfile).is_file()
    stacks = {load_recipe(ROOT / f"infra/stacks/{n}.yaml", CLUSTER_ENV)["stack"] for n in ("kubernetes", "kubeflow")}
    assert config.execution.stack in stacks


def test_local_configs_ask_for_nothing():
    from pipelines.settings import pipeline_settings, train_step_settings

    for name in ("default", "gpu", "tiny", "plain"):
        config = load_config(ROOT / f"configs/{name}.yaml")
        assert train_step_settings(config) == {} and pipeline_settings(config) == {}
    assert {m.precision for m in load_config(ROOT / "configs/gpu.yaml").models} == {"mixed_bfloat16"}


def pins(requirements: list[str]) -> dict[str, str]:
    found = {}
    for requirement in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^;\s]+)", requirement.strip())
        if match:
            found[match.group(1).lower().replace("_", "-")] = match.group(3)
    return found


def test_images_install_the_same_pins_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = pins(project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra])
    constraints = pins((ROOT / "constraints.txt").read_text().splitlines())
    for name, version in declared.items():
        if name in ("kfp",):  # installed after the constraints: it moves protobuf (infra/Dockerfile)
            continue
        assert constraints.get(name) == version, (
            f"constraints.txt pins {name}=={constraints.get(name)}, pyproject {version}"
        )
    dockerfile = (ROOT / "infra/Dockerfile").read_text()
    assert "COPY pyproject.toml constraints.txt" in dockerfile
    assert re.search(r'pip install -c constraints\.txt "\.\[\$EXTRAS\]" "\$TENSORFLOW"', dockerfile)
    # The CUDA variant is the default of the build args (ZenML builds it for configs/cluster.yaml) ...
    assert "ARG EXTRAS=kubernetes,server" in dockerfile and "ARG VARIANT=cuda" in dockerfile
    assert f'ARG TENSORFLOW="tensorflow[and-cuda]=={declared["tensorflow"]}"' in dockerfile
    assert f'"kfp=={declared["kfp"]}"' in dockerfile
    # ... and infra/docker/build.sh builds the CPU variant with the same pins.
    build = (ROOT / "infra/docker/build.sh").read_text()
    assert "--build-arg VARIANT=cpu --build-arg EXTRAS=docker" in build
    assert f"--build-arg TENSORFLOW=tensorflow=={declared['tensorflow']}" in build
    assert f"mlflow[auth]=={declared['mlflow']}" in (ROOT / "infra/mlflow.Dockerfile").read_text()
    assert f"moto[s3]=={constraints['moto']}" in (ROOT / "infra/s3.Dockerfile").read_text()


def compose_file() -> dict:
    return yaml.safe_load((ROOT / "infra/docker-compose.yml").read_text())


def test_compose_file_runs_mlflow_on_postgres_with_an_s3_store_behind_a_login():
    services = compose_file()["services"]
    assert set(services) == {"postgres", "s3", "create-bucket", "mlflow"}
    mlflow = services["mlflow"]
    assert mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"].startswith(
        "postgresql+psycopg2://mlflow:${POSTGRES_PASSWORD}@postgres:"
    )
    assert mlflow["command"][mlflow["command"].index("--artifacts-destination") + 1].startswith("s3://")
    assert mlflow["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "create-bucket": {"condition": "service_completed_successfully"},
    }
    assert services["create-bucket"]["depends_on"] == {"s3": {"condition": "service_healthy"}}
    assert all("healthcheck" in services[name] for name in ("postgres", "s3", "mlflow"))
    entrypoint = (ROOT / "infra/docker/mlflow-entrypoint.sh").read_text()
    assert (
        "--app-name basic-auth" in entrypoint
        and "default_permission = ${MLFLOW_AUTH_DEFAULT_PERMISSION:-NO_PERMISSIONS}" in entrypoint
    )
    postgres = (ROOT / "infra/docker/postgres-entrypoint.sh").read_text()
    assert "--auth=scram-sha-256" in postgres and "trust" not in postgres


def test_compose_services_are_published_on_loopback_unless_configured():
    services = compose_file()["services"]
    published = {name: service.get("ports", []) for name, service in services.items()}
    assert published == {
        "postgres": [],
        "create-bucket": [],
        "s3": ["${COVID_XRAY_BIND_ADDRESS:-127.0.0.1}:${S3_PORT:-9000}:9000"],
        "mlflow": ["${COVID_XRAY_BIND_ADDRESS:-127.0.0.1}:${MLFLOW_PORT:-5000}:5000"],
    }
    script = (ROOT / "infra/mlflow-server.sh").read_text()
    assert 'host="${MLFLOW_HOST:-127.0.0.1}"' in script and "listen_addresses=127.0.0.1" in script


def test_every_secret_comes_from_the_environment_or_the_ignored_env_file():
    secret_like = re.compile(r"PASSWORD|SECRET|_KEY")
    minio = yaml.safe_load((ROOT / "infra/docker-compose.minio.yml").read_text())["services"]
    assert "ports" not in minio["s3"]  # the override publishes nothing more than the base file
    for name, service in [*compose_file()["services"].items(), *(("minio " + n, s) for n, s in minio.items())]:
        for key, value in (service.get("environment") or {}).items():
            if secret_like.search(key):
                assert re.fullmatch(r"\$\{[A-Z0-9_]+(:\?[^}]*)?\}", value), (
                    f"{name}: {key} is not taken from the environment"
                )
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert not [path for path in tracked if Path(path).name == ".env" or path.endswith("host-ca.crt")]
    for path in ("infra/.env", "infra/docker/certs/host-ca.crt"):
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0, path


def test_no_secret_literal_is_in_the_repository():
    """The literals the compose file and scripts once had, and the usual shapes of a written-down credential."""
    patterns = [
        "mlflow-secret",
        "POSTGRES_PASSWORD: mlflow",
        "MINIO_ROOT_PASSWORD: *[\"']?[^\"'$ ]",
        "--auth=trust",
        "mlflow:mlflow@",
        "AKIA[0-9A-Z]{16}",
        "aws_secret_access_key *= *[A-Za-z0-9/+]{40}",
        "BEGIN [A-Z ]*PRIVATE KEY",
    ]
    command = [
        "git",
        "grep",
        "-n",
        "-I",
        "-E",
        *[arg for p in patterns for arg in ("-e", p)],
        "--",
        ".",
        ":!tests/system/test_infra.py",
    ]
    found = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert found.returncode == 1, f"secret-like literals in tracked files:\n{found.stdout}"


def test_docker_config_is_the_default_run_on_the_docker_stack_in_the_project_image():
    from pipelines.settings import pipeline_settings

    default = yaml.safe_load((ROOT / "configs/default.yaml").read_text())
    docker = yaml.safe_load((ROOT / "configs/docker.yaml").read_text())
    assert {k: v for k, v in docker.items() if k != "execution"} == default
    config = load_config(ROOT / "configs/docker.yaml")
    assert config.execution.stack == load_recipe(ROOT / "infra/stacks/docker.yaml", DOCKER_ENV)["stack"]
    settings = pipeline_settings(config)
    assert settings["docker"].parent_image == "covid-xray/step:cpu" and settings["docker"].skip_build
    run_args = settings["orchestrator"]["run_args"]
    assert run_args["network_mode"] == "host" and run_args["remove"] is True
    assert run_args["volumes"] == {
        str(ROOT / "data/raw"): {"bind": "/app/data/raw", "mode": "ro"},
        str(ROOT / config.data.cache_dir): {"bind": f"/app/{config.data.cache_dir}", "mode": "rw"},
    }


def test_run_on_an_unregistered_stack_is_a_clear_error(tmp_path):
    import os
    import subprocess

    from fixtures import write_ieee8023

    write_ieee8023(tmp_path / "data", n_per_class=8)  # enough for the pre-flight: split.min_train_images_per_class 4
    raw = yaml.safe_load((ROOT / "configs/tiny.yaml").read_text())
    raw["data"]["root"] = str(tmp_path / "data")
    raw["execution"] = {"stack": "covid-xray-k8s"}
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump(raw))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZENML_", "MLFLOW_"))}
    result = subprocess.run(
        [sys.executable, "-m", "covid_xray.cli", "run", "--config", str(tmp_path / "cluster.yaml")],
        cwd=ROOT,
        env=env | {"COVID_XRAY_HOME": str(tmp_path / "home")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "covid-xray: error: ZenML stack 'covid-xray-k8s' is not registered (have ['default']); "
        "register it with `python infra/register_stack.py infra/stacks/<recipe>.yaml`"
    )


def test_kubernetes_recipe_registers_in_a_zenml_store(tmp_path):
    """Registration needs no cluster (ZenML checks the kubectl context when a run starts); the secret must exist."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZENML_", "MLFLOW_"))}
    env |= CLUSTER_ENV | {"COVID_XRAY_HOME": str(tmp_path / "home")}
    command = [sys.executable, str(ROOT / "infra/register_stack.py"), str(ROOT / "infra/stacks/kubernetes.yaml")]
    without_secret = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert without_secret.returncode == 1
    assert "experiment_tracker 'covid-xray-mlflow-shared'" in without_secret.stderr
    assert "The secret mlflow_server does not exist" in without_secret.stderr
    script = (
        "from covid_xray.ops.stack import prepare_environment, zenml_client; prepare_environment(); "
        "zenml_client().create_secret('mlflow_server', {'username': 'u', 'password': 'p'})"
    )
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    registered = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert registered.returncode == 0, registered.stderr[-2000:]
    assert "stack covid-xray-k8s registered" in registered.stdout
    listing = (
        "from covid_xray.ops.stack import prepare_environment, zenml_client; prepare_environment(); "
        "s = zenml_client().get_stack('covid-xray-k8s'); print(sorted(str(t) for t in s.components))"
    )
    shown = subprocess.run(
        [sys.executable, "-c", listing], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    for component in ("orchestrator", "artifact_store", "container_registry", "image_builder", "experiment_tracker"):
        assert component in shown.stdout, shown.stdout + shown.stderr[-1000:]


def test_docker_recipe_keeps_credentials_in_zenml_secrets_not_in_component_configuration(tmp_path):
    import json
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZENML_", "MLFLOW_"))}
    env |= DOCKER_ENV | {"COVID_XRAY_HOME": str(tmp_path / "home")}
    command = [sys.executable, str(ROOT / "infra/register_stack.py"), str(ROOT / "infra/stacks/docker.yaml")]
    for _ in range(2):  # the second time updates the secrets and reuses the components
        registered = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert registered.returncode == 0, registered.stderr[-2000:]
        env["S3_SECRET_ACCESS_KEY"] = "rotated-secret"
    script = (
        "import json; from covid_xray.ops.stack import prepare_environment, zenml_client; prepare_environment(); "
        "c = zenml_client(); print(json.dumps({'components': [x.configuration for x in "
        "c.get_stack('covid-xray-docker').components.values() for x in x], "
        "'s3': c.get_secret('covid_xray_s3').secret_values}))"
    )
    shown = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    stored = json.loads(shown.stdout.strip().splitlines()[-1])
    text = json.dumps(stored["components"])
    assert not [v for k, v in DOCKER_ENV.items() if k.endswith(("PASSWORD", "KEY_ID", "ACCESS_KEY")) and v in text]
    assert "rotated-secret" not in text and "{{covid_xray_s3.secret_access_key}}" in text
    assert stored["s3"] == {"access_key_id": "key-from-env", "secret_access_key": "rotated-secret"}
