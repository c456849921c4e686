"""covid-xray command line: run the pipeline, open the MLflow UI, predict, compare, promote, roll back, and show the
champion's history.

The top of the import order: it may import every package of the library, `pipelines` and `steps`. Each command lives in
its own module, loaded when that command runs (click's lazy group). The commands that train or load a model check their
arguments, config and data first, then `load` the module that does the work (`pipeline`, `answers`): a user's mistake is
answered in under two seconds, before Keras (TensorFlow by default) and ZenML start; Keras is then imported with its
framework's start-up noise hidden (covid_xray.ops.quiet; `--verbose` shows it). These by-name loads are the CLI's only
deferred imports; everything else is imported at the top of its module, where lint-imports sees it.

Errors a user can cause (bad config, bad image, no champion yet) end with one line and a non-zero exit code, never a
traceback: 0 success, 1 a failure of the work (a failed step, no champion), 2 bad input (config, data found by the
pre-flight, arguments). A failed pipeline step's traceback goes to the run's log file.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from ..ops.quiet import configure as quiet_keras
from ..ops.stack import zenml_environment
from .common import fail

# command: (module in this package, function, one-line help shown by `covid-xray --help` without loading the module)
COMMANDS = {
    "data": ("data", "data", "Fetch the data: the public sources at pinned commits, or the team store."),
    "run": ("run", "run", "Run the training pipeline on the local ZenML stack."),
    "loso": ("run", "loso", "Leave-one-source-out: train without each source in turn and score the held-out source."),
    "ui": ("ui", "ui", "Open the MLflow UI on 127.0.0.1 for the project's tracking store."),
    "predict": ("predict", "predict", "Classify chest X-ray IMAGES with the champion or a chosen model."),
    "evaluate": ("evaluate", "evaluate", "Evaluate a registered model on labelled images from your site (SITE)."),
    "serve": ("serve", "serve", "Serve a registered model over HTTP: POST base64 images to /invocations."),
    "export": ("export", "export", "Export a registered model's network for other runtimes (ONNX, SavedModel)."),
    "build-image": (
        "serve",
        "build_image_command",
        "Build a Docker image that serves a registered model as `covid-xray serve` does.",
    ),
    "compare": ("compare", "compare", "Print the last N model runs side by side."),
    "promote": ("promote", "promote", "Gate and promote the model of an MLflow run by hand."),
    "card": ("registry", "card", "Print the model card of a registered version."),
    "rollback": ("registry", "rollback", "Make the previous champion the champion again."),
    "history": ("registry", "history", "The champion's lineage: every decision and alias move."),
}
# Commands whose own modules import Keras: it is imported quietly before they load.
KERAS_COMMANDS = {"promote"}


def load(module: str, name: str, keras: bool = False, verbose: bool = False) -> Any:
    """`name` from this package's `module`, imported now: a command's work, once its checks passed. With
    `keras`, Keras is imported first with its framework's start-up noise hidden (all of it shown when `verbose`)."""
    zenml_environment()  # ZenML reads its settings when imported: the project's state folder, before any import
    if keras:
        quiet_keras(verbose)
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


class LazyGroup(click.Group):
    """A click group that imports a command's module only when that command runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, name, _ = COMMANDS[cmd_name]
        command = load(module, name, cmd_name in KERAS_COMMANDS, verbose="--verbose" in sys.argv[1:])
        assert isinstance(command, click.Command)  # noqa: S101 - a programming error in COMMANDS, not user input
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of `--help` from COMMANDS, without importing every command's module."""
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][2]) for name in self.list_commands(ctx)])


@click.group(cls=LazyGroup)
def main() -> None:
    """Train, check and ship COVID-19 detectors for chest X-rays."""


def entry() -> None:
    """Console entry point: unexpected errors end in one line (COVID_XRAY_DEBUG=1 shows the traceback)."""
    try:
        main(standalone_mode=True)
    except Exception as error:  # noqa: BLE001 - the last line of defence against a traceback for the user
        if os.environ.get("COVID_XRAY_DEBUG"):
            raise
        fail(f"{type(error).__name__}: {error} (set COVID_XRAY_DEBUG=1 for the traceback)")
