"""Train one model variant of the config, as its own MLflow run nested under the pipeline's run."""

from pathlib import Path
from typing import Annotated

import keras
import mlflow
from zenml import step
from zenml.logger import get_logger

from covid_xray.config import RunConfig
from covid_xray.data.dataset import image_cache
from covid_xray.data.provenance import data_version
from covid_xray.data.rebalance import class_weights
from covid_xray.data.stream import Split
from covid_xray.modeling.adversarial import divergence
from covid_xray.modeling.training import EpochMetrics
from covid_xray.modeling.training import train_model as fit
from covid_xray.ops.tracking import flat_params, git_commit, hardware, log_training_dataset

logger = get_logger(__name__)


@step(experiment_tracker=True, enable_cache=False)
def train_model(
    train_set: Split, val_set: Split, manifest_hash: str, config: RunConfig, model_name: str
) -> tuple[Annotated[keras.Model, "model"], Annotated[str, "mlflow_run_id"]]:
    model_config = next(m for m in config.models if m.name == model_name)
    version = data_version(Path(config.data.root))
    run_name = f"{model_name} · data {manifest_hash[:8]}"
    with mlflow.start_run(run_name=run_name, nested=True) as run:
        mlflow.set_tags(
            {
                "model.variant": model_name,
                "model.kind": model_config.kind,
                "data.dvc_md5": version,
                "data.manifest_hash": manifest_hash,
                "git.commit": git_commit(),
            }
        )
        mlflow.log_params(flat_params(config, model_name) | hardware())
        mlflow.log_params({"data.train_images": len(train_set), "data.val_images": len(val_set)})
        log_training_dataset(train_set, config.classes, manifest_hash, version, context="training")
        logger.info(
            "Training %s (%s) on %d images, validating on %d",
            model_name,
            model_config.kind,
            len(train_set),
            len(val_set),
        )
        result = fit(
            model_config,
            train_set,
            val_set,
            n_classes=len(config.classes),
            image_size=config.data.image_size,
            image_cache_key=image_cache(config).key,
            cache_dir=config.data.cache_dir,
            class_weight=class_weights(train_set.labels, len(config.classes), config.rebalance.strategy),
            callbacks=[EpochMetrics()],
        )
        runaway = divergence(result.history)
        if runaway:
            mlflow.set_tag("warning.adversarial_divergence", runaway)
            logger.warning("%s: %s", model_name, runaway)
        mlflow.log_metrics(
            {
                "train_seconds": result.seconds,
                "epochs_run": len(next(iter(result.history.values()), [])),
                "parameters_total": result.model.count_params(),
                "parameters_trainable": sum(int(keras.ops.size(w)) for w in result.model.trainable_weights),
                "feature_cache_hits": result.feature_cache_hits,
                "feature_cache_misses": result.feature_cache_misses,
            }
        )
    return result.model, run.info.run_id
