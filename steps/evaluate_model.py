"""Score one trained variant (`covid_xray.evaluation.evaluate`), log what it gives (metrics with patient-group
intervals, per source, by subgroup (view, sex, age band), reliability, plots, test predictions, Grad-CAM, the shortcut
check) and the model as an image-answering pyfunc with its transform, operating point and out-of-distribution record."""

import tempfile
from typing import Annotated

import keras
import mlflow
import numpy as np
import pandas as pd
from zenml import step
from zenml.logger import get_logger

from covid_xray.config import RunConfig
from covid_xray.data.dataset import image_cache, split_of
from covid_xray.data.rebalance import cramers_v
from covid_xray.data.stream import Split
from covid_xray.evaluation.evaluate import evaluate
from covid_xray.evaluation.explain import (
    BORDER_SAMPLE,
    border_check,
    grad_cam,
    sample_per_class,
    save_grad_cam_figure,
    shortcut_check,
)
from covid_xray.evaluation.metrics import confusion, per_source_metrics, save_plots
from covid_xray.evaluation.report import DESCRIPTION, model_run_description
from covid_xray.evaluation.subgroups import subgroup_metrics
from covid_xray.labels import POSITIVE
from covid_xray.serving.pyfunc import log_model

logger = get_logger(__name__)


@step(experiment_tracker=True, enable_cache=False)
def evaluate_model(
    model: keras.Model,
    val_set: Split,
    test_set: Split,
    split_manifest: pd.DataFrame,
    mlflow_run_id: str,
    config: RunConfig,
) -> Annotated[dict, "test_metrics"]:
    classes = config.classes
    rows = split_manifest.set_index("sha256").loc[test_set.keys].reset_index()
    model_config = next(m for m in config.models if m.name == model.name)
    train_set = split_of(split_manifest[split_manifest["split"] == "train"], config)  # before rebalancing
    scored = evaluate(model, model_config, train_set, val_set, test_set, config, context=model.name)
    point, test, val, test_proba = scored.operating_point, scored.test, scored.val, scored.test_proba
    by_source = per_source_metrics(rows, test_proba, classes, point.threshold)
    by_subgroup = subgroup_metrics(rows, test_proba, classes, point.threshold)
    logger.info("%s operating point: %s", model.name, point.to_record())
    logger.info(
        "%s test metrics: %s",
        model.name,
        {k: round(v, 3) for k, v in test.items() if "_ci_" not in k and "_wilson_" not in k},
    )
    logger.info("Per source:\n%s", by_source[["source", "n", "accuracy", "sensitivity", "specificity"]].to_string())
    with mlflow.start_run(run_id=mlflow_run_id, nested=True):
        mlflow.log_metrics({f"test_{k}": v for k, v in test.items() if np.isfinite(v)})
        mlflow.log_metrics({f"val_{k}": v for k, v in val.items() if np.isfinite(v)})
        mlflow.log_dict(point.to_record(), "evaluation/operating_point.json")
        mlflow.log_dict(scored.ood.summary(), "evaluation/ood.json")
        mlflow.log_params({"ood.fraction": scored.ood.fraction, "ood.threshold": scored.ood.threshold})
        mlflow.log_params(
            {
                "operating_point.threshold": point.threshold,
                "operating_point.rule": point.rule,
                "operating_point.calibration": point.calibration,
            }
        )
        mlflow.log_text(by_source.to_csv(index=False), "evaluation/per_source.csv")
        mlflow.log_text(by_subgroup.to_csv(index=False), "evaluation/subgroups.csv")
        mlflow.log_text(
            confusion(rows["label"], test_proba, classes, point.threshold).to_csv(), "evaluation/confusion_matrix.csv"
        )
        probabilities = {f"p_{c}": test_proba[:, i] for i, c in enumerate(classes)}
        predictions = rows[["sha256", "path", "source", "label", "group_id"]].assign(
            **probabilities, predicted=point.labels(test_proba, classes)
        )
        mlflow.log_text(predictions.to_csv(index=False), "evaluation/test_predictions.csv")
        positive = classes.index(POSITIVE)
        with tempfile.TemporaryDirectory() as folder:
            for path in save_plots(
                rows["label"], test_proba, classes, folder, point.threshold, uncalibrated=scored.test_raw
            ):
                mlflow.log_artifact(path, "evaluation")
            # Grad-CAM of a fixed sample of test images: the border share over all of it, the figure of 4 per class
            # (the first 4 of the same per-class draws, so a subset of the measured ones).
            measured = sample_per_class(test_set.labels, per_class=BORDER_SAMPLE)
            measured_pixels = test_set.pixels(measured)
            heatmaps = grad_cam(model, measured_pixels, positive)
            edges, edge_warning = border_check(heatmaps)
            mlflow.log_metrics({f"gradcam.{k}": v for k, v in edges.items() if np.isfinite(v)})
            if edge_warning:
                mlflow.set_tag("warning.edge_attention", edge_warning)
                logger.warning(edge_warning)
            shown = sample_per_class(test_set.labels, per_class=4)
            in_figure = np.isin(measured, shown)
            titles = [
                f"{rows['source'][i]} · {rows['label'][i]} · p({POSITIVE}) {test_proba[i, positive]:.2f}" for i in shown
            ]
            save_grad_cam_figure(measured_pixels[in_figure], heatmaps[in_figure], titles, f"{folder}/grad_cam.png")
            mlflow.log_artifact(f"{folder}/grad_cam.png", "evaluation")
        held_out = split_manifest.set_index("sha256").loc[val_set.keys + test_set.keys]
        shortcut, warning = shortcut_check(
            np.concatenate([scored.val_features, scored.test_features]),
            held_out["source"].to_numpy(),
            held_out["group_id"].to_numpy(),
            cramers_v(split_manifest[split_manifest["split"] == "train"]),
        )
        mlflow.log_metrics({f"shortcut.{k}": v for k, v in shortcut.items() if np.isfinite(v)})
        if warning:
            mlflow.set_tag("warning.shortcut", warning)
            logger.warning(warning)
        # the cache's transform made every pixel this model was trained and evaluated on: it is logged with it
        model_uri = log_model(
            model, image_cache(config).transform, point, classes, rows["path"][0], name=model.name, ood=scored.ood
        )
        tags = mlflow.MlflowClient().get_run(mlflow_run_id).data.tags
        data = f"{tags.get('data.dvc_md5', 'unversioned')}, manifest {tags.get('data.manifest_hash', '?')[:8]}"
        images = {"train": len(train_set), "val": len(val_set), "test": len(test_set)}
        test_metrics = {f"test_{k}": v for k, v in test.items()}
        description = model_run_description(
            model.name, model_config.kind, test_metrics, point.threshold, point.rule, images, data
        )
        mlflow.set_tags({"model_uri": model_uri, DESCRIPTION: description})
    return {
        "run_id": mlflow_run_id,
        "model_uri": model_uri,
        **{f"test_{k}": v for k, v in test.items()},
        **{f"val_{k}": v for k, v in val.items()},
    }
