"""`covid-xray run` (the training pipeline) and `covid-xray loso` (leave-one-source-out on its own).

Both check everything they can before any work starts (covid_xray.data.preflight): a problem is one line and exit
code 2, in under two seconds, before Keras and ZenML load. Only then is the work (`cli.pipeline`) loaded and run.
"""

from __future__ import annotations

import click

from ..config import RunConfig
from ..data.preflight import PreflightError, preflight
from ..ops.stack import prepare_environment
from . import load
from .common import DEFAULT_CONFIG, fail, load_or_fail, verbose_option


@click.command()
@click.option("--config", "config_path", default=DEFAULT_CONFIG, show_default=True, help="Run configuration YAML.")
@click.option("--metrics-dir", default=None, help="Also write DVC metrics and plot data (e.g. eval) for this run.")
@verbose_option
def run(config_path: str, metrics_dir: str | None, verbose: bool) -> None:
    """Run the training pipeline on the local ZenML stack."""
    config = load_or_fail(config_path)
    preflight_or_fail(config)
    uri = prepare_environment(config.tracking.uri)
    load("pipeline", "run_pipeline", keras=True, verbose=verbose)(config, uri, metrics_dir)


@click.command()
@click.option("--config", "config_path", default=DEFAULT_CONFIG, show_default=True)
@click.option("--model", "model_names", multiple=True, help="Model variant(s) of the config (default: all).")
@verbose_option
def loso(config_path: str, model_names: tuple[str, ...], verbose: bool) -> None:
    """Leave-one-source-out: train without each source in turn and score the held-out source."""
    config = load_or_fail(config_path)
    models = [m for m in config.models if not model_names or m.name in model_names]
    if not models:
        fail(f"no model named {list(model_names)} in {config_path}; have {[m.name for m in config.models]}", 2)
    preflight_or_fail(config)
    prepare_environment(config.tracking.uri)
    load("pipeline", "run_folds", keras=True, verbose=verbose)(config, models)


def preflight_or_fail(config: RunConfig) -> None:
    """Everything that can be checked before ZenML starts (covid_xray.data.preflight); a problem is exit code 2."""
    try:
        preflight(config)
    except PreflightError as error:
        fail(str(error), 2)
