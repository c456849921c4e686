import json

import mlflow
import numpy as np
from mlflow import MlflowClient

from covid_xray.data.stream import CacheRef, Split
from covid_xray.data.transform import InferenceTransform
from covid_xray.ops.tracking import log_training_dataset


def test_training_images_are_the_runs_input_dataset_named_by_the_data_version(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = MlflowClient(uri)
    experiment = client.create_experiment("t", artifact_location=(tmp_path / "a").as_uri())
    split = Split(
        ["k1", "k2", "k3"],
        np.array([0, 1, 1]),
        CacheRef(str(tmp_path), InferenceTransform(8)),
        np.array(["a", "b", "b"]),
    )
    with mlflow.start_run(experiment_id=experiment) as run:
        log_training_dataset(split, ["covid", "normal"], "0123456789ab", "d41d8cd98f00")
    [found] = client.get_run(run.info.run_id).inputs.dataset_inputs
    assert (found.dataset.name, found.dataset.digest) == ("covid-xray-data-01234567", "0123456789ab")
    assert {t.key: t.value for t in found.tags} == {"mlflow.data.context": "training", "data.dvc_md5": "d41d8cd98f00"}
    profile = json.loads(found.dataset.profile)
    schema = json.loads(found.dataset.schema)
    assert profile["num_rows"] == 3 and [c["name"] for c in schema["mlflow_colspec"]] == ["sha256", "label", "source"]
