"""The training pipeline: ingest → prepare (split, rebalance) → validate → train → evaluate → promote.

With `evaluation.loso`, a leave-one-source-out step runs before promotion too.

One train and one evaluate step per model variant in the config; each variant is its own MLflow
run, nested under the pipeline run. Training starts only after validation has passed, and the
promotion gate sees every variant and the validation result.
"""

from zenml import Model, pipeline

from covid_xray.config import RunConfig
from pipelines.settings import train_step_settings
from steps.evaluate_model import evaluate_model
from steps.ingest_data import ingest_data
from steps.leave_one_source_out import leave_one_source_out
from steps.prepare_data import prepare_data
from steps.promote_model import promote_model
from steps.train_model import train_model
from steps.validate_data import validate_data


@pipeline(enable_cache=False, model=Model(name="covid-xray", description="COVID-19 detector for chest X-rays"))
def training(config: RunConfig) -> None:
    manifest, drops = ingest_data(config)
    split_manifest, train_set, val_set, test_set, manifest_hash = prepare_data(manifest, config)
    validation_passed = validate_data(split_manifest, drops, config)
    evaluations = []
    train = train_model.with_options(settings=train_step_settings(config))  # e.g. a GPU on a cluster stack
    for variant in config.models:
        model, run_id = train(
            train_set, val_set, manifest_hash, config, variant.name, id=f"train_{variant.name}", after="validate_data"
        )
        evaluate_model(model, val_set, test_set, split_manifest, run_id, config, id=f"evaluate_{variant.name}")
        evaluations.append(f"evaluate_{variant.name}")
    if config.evaluation.loso:
        leave_one_source_out(split_manifest, config, after="validate_data")
        evaluations.append("leave_one_source_out")
    promote_model(validation_passed, config, after=evaluations)
