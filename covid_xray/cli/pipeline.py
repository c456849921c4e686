"""The work of `covid-xray run` and `covid-xray loso`, loaded once their checks passed (see `cli.run`): the ZenML
training pipeline on the configured stack, or the leave-one-source-out folds on their own."""

from __future__ import annotations

import logging
import os

import click
import mlflow
from zenml import Model
from zenml.client import Client
from zenml.enums import ExecutionStatus
from zenml.integrations.mlflow.flavors.mlflow_experiment_tracker_flavor import MLFlowExperimentTrackerSettings

from pipelines.settings import pipeline_settings
from pipelines.training import training

from ..config import ModelConfig, RunConfig
from ..data.dataset import manifest_hash
from ..data.ingest import IngestError, ingest
from ..evaluation.loso import run_loso
from ..evaluation.report import write_dvc_outputs
from ..ops.stack import activate_stack, ensure_experiment, ensure_local_stack, home
from .common import fail


def run_pipeline(config: RunConfig, uri: str, metrics_dir: str | None) -> None:
    """Run the training pipeline on the configured (or local) stack; with `metrics_dir`, write DVC's outputs too."""
    if config.execution.stack:
        try:
            activate_stack(config.execution.stack)
        except ValueError as error:
            fail(str(error), 2)
    else:
        ensure_local_stack(uri)
    ensure_experiment(config.tracking.experiment)
    settings = {
        "experiment_tracker": MLFlowExperimentTrackerSettings(experiment_name=config.tracking.experiment, nested=False),
        **pipeline_settings(config),
    }
    step_tracebacks_to_the_log()
    try:
        model = Model(name=config.promotion.model_name, description="COVID-19 detector for chest X-rays")
        pipeline_run = training.with_options(settings=settings, model=model)(config=config)
    except Exception as error:  # noqa: BLE001 - the failed step's own message is the useful part; its trace is logged
        fail(f"pipeline failed: {failed_steps_message() or ' '.join(str(error).split())}")
    if pipeline_run is None:
        fail("pipeline failed: ZenML returned no pipeline run")
    click.echo(f"Pipeline run {pipeline_run.name}: {pipeline_run.status.value}.")
    if metrics_dir:
        written = write_dvc_outputs(uri, config.tracking.experiment, pipeline_run.name, metrics_dir, config.classes)
        click.echo(f"DVC metrics written to {written}")
    click.echo(f"Done. Open the MLflow UI with `covid-xray ui` (tracking store: {uri}).")


def run_folds(config: RunConfig, models: list[ModelConfig]) -> None:
    """Leave-one-source-out of `models` on the ingested data, one MLflow run per fold, and the tables printed."""
    try:
        manifest, _ = ingest(config.data, config.validation)
    except IngestError as error:
        fail(str(error), 2)
    mlflow.set_experiment(experiment_id=ensure_experiment(f"{config.tracking.experiment}-loso"))
    results = run_loso(config, models, manifest, f"loso · data {manifest_hash(manifest)[:8]}")
    for name, (table, mean) in results.items():
        click.echo(f"\n{name}: leave-one-source-out (mean balanced accuracy over sources with both labels: {mean:.3f})")
        click.echo(table.round(3).to_string(index=False))


class NoTraceback(logging.Filter):
    """ZenML's local orchestrator logs a failed step with its traceback; the user gets the step's message instead
    (covid-xray writes the trace to the run's log file; COVID_XRAY_DEBUG=1 keeps it on the terminal)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info, record.exc_text = None, None
        return True


def step_tracebacks_to_the_log() -> None:
    if not os.environ.get("COVID_XRAY_DEBUG"):
        logging.getLogger("zenml.orchestrators.local.local_orchestrator").addFilter(NoTraceback())


def failed_steps_message() -> str:
    """'step X failed: message' for each failed step of the latest pipeline run (one line each; tracebacks are
    written to <COVID_XRAY_HOME>/logs/<run>.log, named at the end)."""
    runs = Client().list_pipeline_runs(sort_by="desc:created", size=1, hydrate=True).items
    if not runs:
        return ""
    lines, traces = [], []
    for name, step in runs[0].steps.items():
        if step.status == ExecutionStatus.FAILED:
            info = step.exception_info
            message = " ".join(info.message.split()) if info and info.message else "see the log above"
            lines.append(f"step {name} failed: {message}")
            if info and info.traceback:
                traces.append(f"step {name}:\n{info.traceback}")
    if traces:
        log = home() / "logs" / f"{runs[0].name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("\n".join(traces))
        lines[-1] += f" (traceback: {log})"
    return "; ".join(lines)
