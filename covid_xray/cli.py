"""covid-xray command line: run the pipeline, open the MLflow UI, predict, compare, promote, roll back,
and show the champion's history.

Errors a user can cause (bad config, bad image, no champion yet) end with one line and a non-zero
exit code, never a traceback: 0 success, 1 a failure of the work (a failed step, no champion), 2 bad input (config,
data found by the pre-flight, arguments). A failed pipeline step's traceback goes to the run's log file.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import click

from .config import ConfigError, load_config
from .stack import home, prepare_environment, runs_table_url, tracking_uri

DEFAULT_CONFIG = "configs/default.yaml"


def fail(message: str, code: int = 1):
    click.echo(f"covid-xray: error: {message}", err=True)
    sys.exit(code)


def _config(path: str):
    try:
        return load_config(path)
    except ConfigError as error:
        fail(str(error), 2)


def verbose_option(command):
    """--verbose: TensorFlow's own start-up and device logging, hidden otherwise (see covid_xray.quiet)."""
    return click.option("--verbose", is_flag=True, help="Show TensorFlow's start-up and device logging.")(command)


def quiet_frameworks(verbose: bool) -> None:
    from .quiet import configure

    configure(verbose)


def _store(config_path: str | None):
    """(config or None, tracking URI): MLFLOW_TRACKING_URI, else the config's tracking.uri, else the project store."""
    config = _config(config_path) if config_path else None
    return config, prepare_environment(config.tracking.uri if config else None)


@click.group()
def main() -> None:
    """Train, check and ship COVID-19 detectors for chest X-rays."""


@main.command()
@click.option("--config", "config_path", default=DEFAULT_CONFIG, show_default=True, help="Run configuration YAML.")
@click.option("--metrics-dir", default=None, help="Also write DVC metrics and plot data (e.g. eval) for this run.")
@verbose_option
def run(config_path: str, metrics_dir: str | None, verbose: bool) -> None:
    """Run the training pipeline on the local ZenML stack."""
    config = _config(config_path)
    _preflight(config)  # before TensorFlow and ZenML start: bad input fails in seconds
    uri = prepare_environment(config.tracking.uri)
    quiet_frameworks(verbose)
    from zenml.integrations.mlflow.flavors.mlflow_experiment_tracker_flavor import MLFlowExperimentTrackerSettings

    from zenml import Model

    from pipelines.training import training

    from pipelines.settings import pipeline_settings

    from .stack import activate_stack, ensure_experiment, ensure_local_stack

    if config.execution.stack:
        try:
            activate_stack(config.execution.stack)
        except ValueError as error:
            fail(str(error), 2)
    else:
        ensure_local_stack(uri)
    ensure_experiment(config.tracking.experiment)
    settings = {"experiment_tracker": MLFlowExperimentTrackerSettings(experiment_name=config.tracking.experiment),
                **pipeline_settings(config)}  # fmt: skip
    _step_tracebacks_to_the_log()
    try:
        model = Model(name=config.promotion.model_name, description="COVID-19 detector for chest X-rays")
        run = training.with_options(settings=settings, model=model)(config=config)
    except Exception as error:  # the failed step's own message is the useful part; its trace goes to the log
        fail(f"pipeline failed: {failed_steps_message() or ' '.join(str(error).split())}")
    click.echo(f"Pipeline run {run.name}: {run.status.value}.")
    if metrics_dir:
        from .report import write_dvc_outputs

        written = write_dvc_outputs(uri, config.tracking.experiment, run.name, metrics_dir, config.data.classes)
        click.echo(f"DVC metrics written to {written}")
    click.echo(f"Done. Open the MLflow UI with `covid-xray ui` (tracking store: {uri}).")


def _preflight(config) -> None:
    """Everything that can be checked before ZenML starts (covid_xray.preflight); a problem is exit code 2."""
    from .preflight import PreflightError, preflight

    try:
        preflight(config)
    except PreflightError as error:
        fail(str(error), 2)


class _NoTraceback(logging.Filter):
    """ZenML's local orchestrator logs a failed step with its traceback; the user gets the step's message instead
    (covid-xray writes the trace to the run's log file; COVID_XRAY_DEBUG=1 keeps it on the terminal)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info, record.exc_text = None, None
        return True


def _step_tracebacks_to_the_log() -> None:
    if not os.environ.get("COVID_XRAY_DEBUG"):
        logging.getLogger("zenml.orchestrators.local.local_orchestrator").addFilter(_NoTraceback())


def failed_steps_message() -> str:
    """'step X failed: message' for each failed step of the latest pipeline run (one line each; tracebacks are
    written to <COVID_XRAY_HOME>/logs/<run>.log, named at the end)."""
    from zenml.client import Client
    from zenml.enums import ExecutionStatus

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


@main.command()
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--config", "config_path", default=None, help="Take the tracking URI from this config.")
def ui(port: int, config_path: str | None) -> None:
    """Open the MLflow UI on 127.0.0.1 for the project's tracking store."""
    import socket

    config = _config(config_path) if config_path else None
    uri = tracking_uri(config.tracking.uri if config else None)
    artifacts = str(home() / "mlartifacts")
    with socket.socket() as probe:  # a port MLflow cannot use is one line here, not a server traceback
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as error:
            fail(f"cannot serve on 127.0.0.1:{port}: {error.strerror or error}", 2)
    click.echo(f"MLflow UI on http://127.0.0.1:{port} (tracking store {uri})")
    click.echo(f"Model runs: {runs_table_url(uri, config.tracking.experiment if config else 'covid-xray-training', port)}")
    server = subprocess.run([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
                             "--port", str(port), "--artifacts-destination", artifacts], check=False)  # fmt: skip
    if server.returncode not in (0, -2, 130):  # an interrupt (Ctrl-C) is how the UI is meant to stop
        fail(f"the MLflow UI stopped with exit code {server.returncode} (its output is above)", 1)


@main.command()
@click.argument("images", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line: path, status (ok/refused), class, "
              "covid_probability, threshold, out_of_distribution, model.")  # fmt: skip
@click.option("--output", "output", default=None, help="Write all answers to FILE (.csv, or .jsonl for JSON lines).")
@click.option("--model-name", default=None, help="Registered model [default: the config's promotion.model_name, "
              "else covid-xray].")  # fmt: skip
@click.option("--alias", default=None, help="Registry alias to use [default: champion].")
@click.option("--model-version", default=None, help="Registered version number to use instead of an alias.")
@click.option("--run", "run_id", default=None, help="Use the model logged on this MLflow run instead of the registry.")
@click.option("--config", "config_path", default=None, help="Take the tracking URI and model name from this config.")
@click.option("--explain", "explain_dir", default=None, help="Write a Grad-CAM overlay PNG per image into DIR.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1), help="Images per model call.")
@verbose_option
def predict(images: tuple[str, ...], as_json: bool, output: str | None, model_name: str | None, alias: str | None,
            model_version: str | None, run_id: str | None, config_path: str | None, explain_dir: str | None,
            batch_size: int, verbose: bool) -> None:  # fmt: skip
    """Classify chest X-ray IMAGES (files, folders searched recursively, or .csv lists with a `path` column) with
    the registered champion, or the model picked by --alias, --model-version or --run."""
    chosen = [name for name, value in (("--alias", alias), ("--model-version", model_version), ("--run", run_id))
              if value is not None]  # fmt: skip
    if len(chosen) > 1:
        fail(f"{' and '.join(chosen)} both pick the model: give only one", 2)
    config, _ = _store(config_path)
    from .predict_io import (InputError, answer_records, collect_inputs, output_format, summary_line, text_line,
                             write_explanations, write_records)  # fmt: skip

    try:
        if output:
            output_format(output)
        inputs = collect_inputs(list(images))
    except InputError as error:
        fail(str(error), 2)
    for note in inputs.notes:
        click.echo(f"covid-xray: note: {note}", err=True)
    quiet_frameworks(verbose)
    from .predict import ModelNotFound, Predictor

    name = model_name or (config.promotion.model_name if config else "covid-xray")
    try:
        if run_id:
            predictor = Predictor.from_run(run_id)
        else:
            predictor = Predictor.from_registry(name, alias=alias or "champion", version=model_version)
    except ModelNotFound as error:
        fail(str(error))
    paths = inputs.paths
    if len(paths) > batch_size and sys.stderr.isatty():
        with click.progressbar(length=len(paths), label="Predicting", file=sys.stderr) as bar:
            answers = predictor.predict_files(paths, batch_size=batch_size, progress=bar.update)
    else:
        answers = predictor.predict_files(paths, batch_size=batch_size)
    records = answer_records(paths, answers, predictor.description, predictor.model_uri)
    failures = [r for r in records if r["status"] == "error"]
    for record in failures:
        click.echo(f"covid-xray: error: {record['path']}: {record['error']}", err=True)
    answered = [r for r in records if r["status"] == "ok"]
    if explain_dir and answered:
        for record, png in zip(answered, write_explanations(predictor, [r["path"] for r in answered], explain_dir)):
            record["explanation"] = png
    if output:
        write_records(records, output)
        click.echo(f"{summary_line(records)}, by {predictor.description}: {output}")
    else:
        for record in records:
            if record["status"] != "error":  # errors went to stderr above
                click.echo(json.dumps(record) if as_json else text_line(record))
    # Every input answered (out-of-distribution ones too: they carry the flag): 0; any refused or unread input: 1.
    if len(answered) < len(records):
        sys.exit(1)


@main.command()
@click.option("--config", "config_path", default=DEFAULT_CONFIG, show_default=True)
@click.option("--model", "model_names", multiple=True, help="Model variant(s) of the config (default: all).")
@verbose_option
def loso(config_path: str, model_names: tuple[str, ...], verbose: bool) -> None:
    """Leave-one-source-out: train without each source in turn and score the held-out source."""
    config = _config(config_path)
    _preflight(config)
    prepare_environment(config.tracking.uri)
    quiet_frameworks(verbose)
    import mlflow

    from .dataset import manifest_hash
    from .ingest import IngestError, ingest
    from .loso import run_loso
    from .stack import ensure_experiment

    models = [m for m in config.models if not model_names or m.name in model_names]
    if not models:
        fail(f"no model named {list(model_names)} in {config_path}; have {[m.name for m in config.models]}", 2)
    try:
        manifest, _ = ingest(config.data, config.validation)
    except IngestError as error:
        fail(str(error), 2)
    mlflow.set_experiment(experiment_id=ensure_experiment(f"{config.tracking.experiment}-loso"))
    results = run_loso(config, models, manifest, f"loso · data {manifest_hash(manifest)[:8]}")
    for name, (table, mean) in results.items():
        click.echo(f"\n{name}: leave-one-source-out (mean balanced accuracy over sources with both labels: {mean:.3f})")
        click.echo(table.round(3).to_string(index=False))


@main.command()
@click.option("-n", "count", default=10, show_default=True, type=click.IntRange(1), help="How many recent model runs.")
@click.option("--experiment", default=None, help="MLflow experiment [default: the config's, else covid-xray-training].")
@click.option("--config", "config_path", default=None, help="Take the tracking URI and experiment from this config.")
def compare(count: int, experiment: str | None, config_path: str | None) -> None:
    """Print the last N model runs side by side: test metrics with 95% CIs, data version, promotion."""
    config, _ = _store(config_path)
    experiment = experiment or (config.tracking.experiment if config else "covid-xray-training")
    from .report import compare_runs

    table = compare_runs(experiment, count)
    if table.empty:
        fail(f"no model runs in experiment {experiment!r} yet: run `covid-xray run` first")
    click.echo(table.to_string(index=False))


@main.command()
@click.option("--run", "run_id", required=True, help="MLflow run id of an evaluated model variant.")
@click.option("--config", "config_path", default=DEFAULT_CONFIG, show_default=True)
@click.option("--force", "force_reason", default=None, help="Promote even if the gate fails; give the reason.")
@verbose_option
def promote(run_id: str, config_path: str, force_reason: str | None, verbose: bool) -> None:
    """Gate and promote the model of an MLflow run by hand (same checks as the pipeline)."""
    config = _config(config_path)
    prepare_environment(config.tracking.uri)
    quiet_frameworks(verbose)
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from .model_card import log_model_card
    from .promotion import LeaseBusy, LeaseLost, PromotionError, promote_run

    client = MlflowClient()
    try:
        why = f"candidate chosen by hand: covid-xray promote --run {run_id}"
        version, decision = promote_run(client, run_id, config.promotion, force_reason=force_reason, selection=why)
    except (MlflowException, PromotionError, LeaseBusy, LeaseLost, OSError, LookupError, ValueError) as error:
        fail(f"cannot promote run {run_id}: {error}")
    log_model_card(client, config.promotion.model_name, version)
    click.echo(f"{config.promotion.model_name} version {version}: {decision.summary}")
    _follow_aliases(client, config.promotion.model_name)
    if not decision.promote:
        sys.exit(1)


@main.command()
@click.option("--model-name", default=None, help="Registered model [default: the config's, else covid-xray].")
@click.option("--alias", default=None, help="Registry alias [default: champion].")
@click.option("--model-version", default=None, help="Registered version number instead of an alias.")
@click.option("--config", "config_path", default=None, help="Take the tracking URI and model name from this config.")
def card(model_name: str | None, alias: str | None, model_version: str | None, config_path: str | None) -> None:
    """Print the model card of a registered version: use, data, operating point, metrics, known failure modes."""
    if alias is not None and model_version is not None:
        fail("--alias and --model-version both pick the model: give only one", 2)
    config, _ = _store(config_path)
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from .model_card import model_card

    client = MlflowClient()
    model_name = model_name or (config.promotion.model_name if config else "covid-xray")
    try:
        version = model_version or client.get_model_version_by_alias(model_name, alias or "champion").version
        text = model_card(client, model_name, version)
    except MlflowException as error:
        which = f" version {model_version}" if model_version else f"@{alias or 'champion'}"
        fail(f"no model card for {model_name}{which}: {error.message}")
    click.echo(text, nl=False)


@main.command()
@click.option("--model-name", default=None, help="Registered model [default: the config's, else covid-xray].")
@click.option("--config", "config_path", default=None, help="Take the tracking URI and model name from this config.")
@click.option("--reason", default="rollback by hand", show_default=True, help="Recorded with the move.")
def rollback(model_name: str | None, config_path: str | None, reason: str) -> None:
    """Make the previous champion the champion again."""
    config, _ = _store(config_path)
    model_name = model_name or (config.promotion.model_name if config else "covid-xray")
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from .promotion import LeaseBusy, LeaseLost
    from .promotion import rollback as roll_back

    client = MlflowClient()
    try:
        old, new = roll_back(client, model_name, reason=reason)
    except (ValueError, MlflowException, LeaseBusy, LeaseLost) as error:
        fail(str(error))
    click.echo(f"{model_name}: champion is now version {new} (was {old})")
    _follow_aliases(client, model_name)


def _follow_aliases(client, name: str) -> None:
    """ZenML stages follow the aliases just moved; a failure here names the fix (the aliases already moved)."""
    from .lifecycle import follow_aliases

    try:
        changed = follow_aliases(client, name)
    except Exception as error:  # noqa: BLE001 - reported, not swallowed: MLflow is already right, ZenML is not
        fail(f"MLflow aliases moved, but ZenML stages could not follow ({type(error).__name__}: {error}); "
             f"rerun `covid-xray history --model-name {name} --sync` to retry")  # fmt: skip
    if changed:
        click.echo("ZenML stages: " + ", ".join(f"version {v} {stage}" for v, stage in sorted(changed.items())))


@main.command()
@click.option("--model-name", default=None, help="Registered model [default: the config's, else covid-xray].")
@click.option("--config", "config_path", default=None, help="Take the tracking URI and model name from this config.")
@click.option("--sync", is_flag=True, help="Also set the ZenML stages from the MLflow aliases.")
def history(model_name: str | None, config_path: str | None, sync: bool) -> None:
    """The champion's lineage: every decision and alias move with its time, reasons and evidence numbers."""
    config, _ = _store(config_path)
    model_name = model_name or (config.promotion.model_name if config else "covid-xray")
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from .promotion import CHALLENGER, CHAMPION, PREVIOUS, _by_alias, pending_move
    from .promotion import history as read_history

    client = MlflowClient()
    try:
        events = read_history(client, model_name)
        aliases = {alias: _by_alias(client, model_name, alias) for alias in (CHAMPION, PREVIOUS, CHALLENGER)}
        pending = pending_move(client, model_name)
    except MlflowException as error:
        fail(f"no history for model {model_name!r}: {error.message}")
    if not events:
        fail(f"model {model_name!r} has no recorded decisions yet")
    for event in events:
        click.echo(format_event(event))
    click.echo("now: " + ", ".join(f"{a} = version {v.version}" if v else f"{a} = none" for a, v in aliases.items()))
    if pending:
        click.echo(f"unfinished move (completed by the next promote/rollback): {json.dumps(pending)}")
    if sync:
        _follow_aliases(client, model_name)
    from .lifecycle import zenml_stages

    try:
        stages = zenml_stages(model_name)
    except Exception as error:  # noqa: BLE001 - shown: the MLflow lineage above stands without ZenML
        click.echo(f"zenml: stages unavailable ({type(error).__name__}: {error})")
        return
    click.echo("zenml: " + (", ".join(f"version {v} {s}" for v, s in sorted(stages.items(), key=lambda i: int(i[0])))
                            or "no model version mirrors an MLflow version"))  # fmt: skip


def format_event(event: dict) -> str:
    """One event as a header line, its reasons and its evidence numbers."""
    moved = f"version {event.get('from_version') or 'none'} -> version {event.get('to_version') or 'none'}"
    run = f", run {event['run_id']}" if event.get("run_id") else ""
    candidate = f", candidate version {event['candidate']}" if event.get("candidate") else ""
    lines = [f"{event['time']}  {event['action']:<9} {moved}  by {event['by']}{run}{candidate}"]
    lines += [f"    - {reason}" for reason in event.get("reasons", [])]
    evidence = dict(event.get("evidence") or {})
    comparison = evidence.pop("comparison", None)
    if evidence:
        lines.append("    evidence: " + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                                for k, v in sorted(evidence.items())))  # fmt: skip
    if comparison:
        lines.append("    comparison: " + ", ".join(f"{k}={v}" for k, v in comparison.items()))
    return "\n".join(lines)


def entry() -> None:
    """Console entry point: unexpected errors end in one line (COVID_XRAY_DEBUG=1 shows the traceback)."""
    import os

    try:
        main(standalone_mode=True)
    except Exception as error:  # noqa: BLE001 - the last line of defence against a traceback for the user
        if os.environ.get("COVID_XRAY_DEBUG"):
            raise
        fail(f"{type(error).__name__}: {error} (set COVID_XRAY_DEBUG=1 for the traceback)")


if __name__ == "__main__":
    entry()
