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
