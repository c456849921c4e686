"""infra/: stack recipes, cluster run settings and images, validated as far as possible without a cluster."""

import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "infra"))

from register_stack import RecipeError, load_recipe, validate  # noqa: E402

from covid_xray.config import load_config  # noqa: E402

CLUSTER_ENV = {"KUBE_CONTEXT": "gpu-cluster", "ARTIFACT_BUCKET": "covid-xray-artifacts",
               "REGISTRY_URI": "registry.example.com/covid-xray", "MLFLOW_TRACKING_URI": "http://mlflow.example:5000"}  # fmt: skip


@pytest.mark.parametrize("recipe", ["local", "kubernetes", "kubeflow"])
def test_stack_recipes_validate_against_zenml_flavors(recipe):
    loaded = load_recipe(ROOT / f"infra/stacks/{recipe}.yaml", CLUSTER_ENV)
    checked = validate(loaded, recipe)
    assert "orchestrator/" in " ".join(checked) and "experiment_tracker/" in " ".join(checked)
    if recipe != "local":
        assert {c.split("/")[0] for c in checked} >= {"orchestrator", "artifact_store", "container_registry",
                                                       "image_builder", "experiment_tracker"}  # fmt: skip


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

    for name in ("default", "gpu", "tiny"):
        config = load_config(ROOT / f"configs/{name}.yaml")
        assert train_step_settings(config) == {} and pipeline_settings(config) == {}
    assert {m.precision for m in load_config(ROOT / "configs/gpu.yaml").models} == {"mixed_float16"}


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
        assert constraints.get(name) == version, f"constraints.txt pins {name}=={constraints.get(name)}, pyproject {version}"
    dockerfile = (ROOT / "infra/Dockerfile").read_text()
    assert "COPY pyproject.toml constraints.txt" in dockerfile
    assert re.search(r'pip install -c constraints\.txt "\.\[kubernetes,server\]"', dockerfile)
    assert f'"tensorflow[and-cuda]=={declared["tensorflow"]}"' in dockerfile
    assert f'"kfp=={declared["kfp"]}"' in dockerfile
    assert f"mlflow=={declared['mlflow']}" in (ROOT / "infra/mlflow.Dockerfile").read_text()


def test_compose_file_runs_mlflow_on_postgres_with_an_s3_store():
    compose = yaml.safe_load((ROOT / "infra/docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) >= {"postgres", "minio", "mlflow"}
    command = services["mlflow"]["command"]
    assert "--backend-store-uri postgresql://" in command and "--artifacts-destination s3://" in command
    assert services["mlflow"]["depends_on"]["postgres"]["condition"] == "service_healthy"


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
    result = subprocess.run([sys.executable, "-m", "covid_xray.cli", "run", "--config", str(tmp_path / "cluster.yaml")],
                            cwd=ROOT, env=env | {"COVID_XRAY_HOME": str(tmp_path / "home")}, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "covid-xray: error: ZenML stack 'covid-xray-k8s' is not registered (have ['default']); "
        "register it with `python infra/register_stack.py infra/stacks/<recipe>.yaml`")


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
    script = ("from covid_xray.stack import prepare_environment, zenml_client; prepare_environment(); "
              "zenml_client().create_secret('mlflow_server', {'username': 'u', 'password': 'p'})")  # fmt: skip
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    registered = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert registered.returncode == 0, registered.stderr[-2000:]
    assert "stack covid-xray-k8s registered" in registered.stdout
    listing = ("from covid_xray.stack import prepare_environment, zenml_client; prepare_environment(); "
               "s = zenml_client().get_stack('covid-xray-k8s'); print(sorted(str(t) for t in s.components))")  # fmt: skip
    shown = subprocess.run([sys.executable, "-c", listing], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    for component in ("orchestrator", "artifact_store", "container_registry", "image_builder", "experiment_tracker"):
        assert component in shown.stdout, shown.stdout + shown.stderr[-1000:]
