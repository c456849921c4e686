"""`covid-xray export`: a registered model's network as ONNX or a TensorFlow SavedModel, with its transform, operating
point and classes as JSON beside it (covid_xray.serving.export). The arguments and the output folder are checked first,
in under two seconds; then the model is loaded and written (`cli.export_files`)."""

from __future__ import annotations

import click

from ..serving.inputs import InputError, check_new_folder
from . import load
from .common import fail, model_name_of, one_model_choice, store, verbose_option

FORMATS = ("onnx", "saved_model")  # covid_xray.serving.export.FORMATS, named here without importing Keras


@click.command()
@click.option("--format", "fmt", required=True, type=click.Choice(FORMATS), help="The network's format.")
@click.option("--output", required=True, help="A new (or empty) folder to write the network and its records into.")
@click.option("--model-name", default=None, help="Registered model [default: the config's, else covid-xray].")
@click.option("--alias", default=None, help="Registry alias to export [default: champion].")
@click.option("--model-version", default=None, help="Registered version number to export instead of an alias.")
@click.option("--config", "config_path", default=None, help="Take the tracking URI and model name from this config.")
@verbose_option
def export(
    fmt: str,
    output: str,
    model_name: str | None,
    alias: str | None,
    model_version: str | None,
    config_path: str | None,
    verbose: bool,
) -> None:
    """Export a registered model's network for other runtimes (ONNX, SavedModel).

    The network is written by Keras 3's export; transform.json, operating_point.json and classes.json beside it say
    how to make its input and read its output, and export.json which version it is (docs/serving.md#export)."""
    one_model_choice(alias=alias, model_version=model_version)
    config, _ = store(config_path)
    try:
        check_new_folder(output, "--output")
    except InputError as error:
        fail(str(error), 2)
    name = model_name_of(config, model_name)
    write_export = load("export_files", "write_export", keras=True, verbose=verbose)
    write_export(name, alias, model_version, fmt, output)
