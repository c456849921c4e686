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


def store(config_path: str | None) -> tuple[RunConfig | None, str]:
    """(config or None, tracking URI): MLFLOW_TRACKING_URI, else the config's tracking.uri, else the project store."""
    config = load_or_fail(config_path) if config_path else None
    return config, prepare_environment(config.tracking.uri if config else None)
