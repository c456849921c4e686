"""The operating point chosen on validation; test metrics at it with patient-group intervals, per source, plots,
reliability before and after calibration, the test predictions, and the model logged as an image-answering pyfunc with its
transform, operating point and out-of-distribution record (fitted on the training split, threshold on validation)."""

import tempfile
from typing import Annotated

import keras
import mlflow
import numpy as np
import pandas as pd
from zenml import step
from zenml.logger import get_logger

from covid_xray.config import RunConfig
from covid_xray.dataset import image_cache, split_of
from covid_xray.explain import grad_cam, predict_with_features, sample_per_class, save_grad_cam_figure, shortcut_check
from covid_xray.calibration import reliability
from covid_xray.metrics import confusion, covid_metrics, per_source_metrics, save_plots
from covid_xray.ood import fit_detector, ood_features
from covid_xray.operating_point import choose_operating_point
from covid_xray.rebalance import cramers_v
from covid_xray.serving import log_model
from covid_xray.stream import Split, pixel_batches

logger = get_logger(__name__)


@step(experiment_tracker=True, enable_cache=False)
def evaluate_model(
    model: keras.Model, val_set: Split, test_set: Split, split_manifest: pd.DataFrame, mlflow_run_id: str,
    config: RunConfig,
) -> Annotated[dict, "test_metrics"]:
    classes = config.data.classes
    by_key = split_manifest.set_index("sha256")
    rows, val_rows = (by_key.loc[split.keys].reset_index() for split in (test_set, val_set))
    test_raw, test_features = predict_with_features(model, pixel_batches(test_set))
    val_raw, val_features = predict_with_features(model, pixel_batches(val_set))
    operating_point = choose_operating_point(val_rows["label"].to_numpy(), val_raw, classes,
                                             config.evaluation.operating_point)  # fmt: skip
    threshold = operating_point.threshold
    test_proba, val_proba = operating_point.calibrate(test_raw, classes), operating_point.calibrate(val_raw, classes)
    test = covid_metrics(rows["label"].to_numpy(), test_proba, classes, rows["group_id"].to_numpy(), threshold)
    val = covid_metrics(val_rows["label"].to_numpy(), val_proba, classes, val_rows["group_id"].to_numpy(), threshold)
    before, after = reliability(rows["label"], test_raw, classes), reliability(rows["label"], test_proba, classes)
    test |= {"ece": after["ece"], "ece_before_calibration": before["ece"], "brier_before_calibration": before["brier"]}
    by_source = per_source_metrics(rows, test_proba, classes, threshold)
    model_config = next(m for m in config.models if m.name == model.name)
    train_split = split_of(split_manifest[split_manifest["split"] == "train"], config)
    val_ood, test_ood = (ood_features(model, pixel_batches(s), f) for s, f in ((val_set, val_features), (test_set, test_features)))
    ood = fit_detector(model, model_config, train_split, val_ood, config)  # logged with the model below
    test |= {"ood_flag_rate": ood.flag_rate(test_ood)}
    val |= {"ood_flag_rate": ood.val_flag_rate}
    logger.info("%s operating point: %s", model.name, operating_point.to_record())
    logger.info("%s test metrics: %s", model.name,
                {k: round(v, 3) for k, v in test.items() if "_ci_" not in k and "_wilson_" not in k})  # fmt: skip
    logger.info("Per source:\n%s", by_source[["source", "n", "accuracy", "sensitivity", "specificity"]].to_string())
    with mlflow.start_run(run_id=mlflow_run_id, nested=True):
        mlflow.log_metrics({f"test_{k}": v for k, v in test.items() if np.isfinite(v)})
        mlflow.log_metrics({f"val_{k}": v for k, v in val.items() if np.isfinite(v)})
        mlflow.log_dict(operating_point.to_record(), "evaluation/operating_point.json")
        mlflow.log_dict(ood.summary(), "evaluation/ood.json")
        mlflow.log_params({"ood.fraction": ood.fraction, "ood.threshold": ood.threshold})
        mlflow.log_params({"operating_point.threshold": threshold, "operating_point.rule": operating_point.rule,
                           "operating_point.calibration": operating_point.calibration})  # fmt: skip
        mlflow.log_text(by_source.to_csv(index=False), "evaluation/per_source.csv")
        confusion_table = confusion(rows["label"], test_proba, classes, threshold)
        mlflow.log_text(confusion_table.to_csv(), "evaluation/confusion_matrix.csv")
        probabilities = {f"p_{c}": test_proba[:, i] for i, c in enumerate(classes)}
        predictions = rows[["sha256", "path", "source", "label", "group_id"]].assign(
            **probabilities, predicted=operating_point.labels(test_proba, classes))  # fmt: skip
        mlflow.log_text(predictions.to_csv(index=False), "evaluation/test_predictions.csv")
        with tempfile.TemporaryDirectory() as folder:
            for path in save_plots(rows["label"], test_proba, classes, folder, threshold, uncalibrated=test_raw):
                mlflow.log_artifact(path, "evaluation")
            shown = sample_per_class(test_set.labels, per_class=4)
            shown_pixels = test_set.pixels(shown)
            heatmaps = grad_cam(model, shown_pixels, classes.index("covid"))
            titles = [f"{rows['source'][i]} · {rows['label'][i]} · p(covid) {test_proba[i, classes.index('covid')]:.2f}"
                      for i in shown]  # fmt: skip
            save_grad_cam_figure(shown_pixels, heatmaps, titles, f"{folder}/grad_cam.png")
            mlflow.log_artifact(f"{folder}/grad_cam.png", "evaluation")
        held_out = split_manifest.set_index("sha256").loc[val_set.keys + test_set.keys]
        shortcut, warning = shortcut_check(np.concatenate([val_features, test_features]), held_out["source"].to_numpy(),
                                           held_out["group_id"].to_numpy(),
                                           cramers_v(split_manifest[split_manifest["split"] == "train"]))  # fmt: skip
        mlflow.log_metrics({f"shortcut.{k}": v for k, v in shortcut.items() if np.isfinite(v)})
        if warning:
            mlflow.set_tag("warning.shortcut", warning)
            logger.warning(warning)
        # the cache's transform made every pixel this model was trained and evaluated on: it is logged with it
        model_uri = log_model(model, image_cache(config).transform, operating_point, classes, rows["path"][0], ood=ood)
        mlflow.set_tag("model_uri", model_uri)
    return {"run_id": mlflow_run_id, "model_uri": model_uri, **{f"test_{k}": v for k, v in test.items()},
            **{f"val_{k}": v for k, v in val.items()}}  # fmt: skip
