"""What every command shares: the one-line error, the config loaded or refused, the tracking store."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

import click

from ..config import ConfigError, RunConfig, load_config
from ..ops.stack import prepare_environment

DEFAULT_CONFIG = "configs/default.yaml"
Command = TypeVar("Command", bound=Callable[..., object])


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"covid-xray: error: {message}", err=True)
    sys.exit(code)


def load_or_fail(path: str) -> RunConfig:
    """The config at `path`, or exit 2 with the one line that names the file and the key."""
    try:
        return load_config(path)
    except ConfigError as error:
        fail(str(error), 2)


def verbose_option(command: Command) -> Command:
    """--verbose: the framework's own start-up and device logging, hidden otherwise (see covid_xray.ops.quiet)."""
    help_text = "Show the start-up and device logging of the framework Keras runs on (TensorFlow by default)."
    return click.option("--verbose", is_flag=True, help=help_text)(command)


def one_model_choice(**options: object) -> None:
    """Exit 2 when more than one of the options that pick the model is given (keywords: the options' names)."""
    chosen = [f"--{name.replace('_', '-')}" for name, value in options.items() if value is not None]
    if len(chosen) > 1:
        fail(f"{' and '.join(chosen)} both pick the model: give only one", 2)


def model_name_of(config: RunConfig | None, given: str | None) -> str:
    """The registered model a command means: --model-name, else the config's promotion.model_name, else covid-xray."""
    return given or (config.promotion.model_name if config else "covid-xray")


def store(config_path: str | None) -> tuple[RunConfig | None, str]:
    """(config or None, tracking URI): MLFLOW_TRACKING_URI, else the config's tracking.uri, else the project store."""
    config = load_or_fail(config_path) if config_path else None
    return config, prepare_environment(config.tracking.uri if config else None)
