"""`covid-xray predict`: classify image files with a registered or logged model, through its own transform and
operating point. The arguments, the input lists, the output file's format and the inputs' file headers are checked
first, in under two seconds; then the model is loaded and the images answered (`cli.answers`)."""

from __future__ import annotations

import click

from ..serving.inputs import InputError, check_writable, collect_inputs, output_format, unreadable
from . import load
from .common import fail, model_name_of, one_model_choice, store, verbose_option


@click.command()
@click.argument("images", nargs=-1, required=True)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON object per line: path, status (ok/refused), class, "
    "covid_probability, threshold, out_of_distribution, model.",
)
@click.option("--output", "output", default=None, help="Write all answers to FILE (.csv, or .jsonl for JSON lines).")
@click.option(
    "--model-name", default=None, help="Registered model [default: the config's promotion.model_name, else covid-xray]."
)
@click.option("--alias", default=None, help="Registry alias to use [default: champion].")
@click.option("--model-version", default=None, help="Registered version number to use instead of an alias.")
@click.option("--run", "run_id", default=None, help="Use the model logged on this MLflow run instead of the registry.")
@click.option("--config", "config_path", default=None, help="Take the tracking URI and model name from this config.")
@click.option("--explain", "explain_dir", default=None, help="Write a Grad-CAM overlay PNG per image into DIR.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1), help="Images per model call.")
@verbose_option
def predict(
    images: tuple[str, ...],
    as_json: bool,
    output: str | None,
    model_name: str | None,
    alias: str | None,
    model_version: str | None,
    run_id: str | None,
    config_path: str | None,
    explain_dir: str | None,
    batch_size: int,
    verbose: bool,
) -> None:
    """Classify chest X-ray IMAGES with the champion or a chosen model.

    IMAGES are files, folders (searched recursively) or .csv lists with a `path` column; the model is the registered
    champion, or the one picked by --alias, --model-version or --run."""
    one_model_choice(alias=alias, model_version=model_version, run=run_id)
    config, _ = store(config_path)
    try:
        if output:
            output_format(output)
            check_writable(output, "--output")
        if explain_dir:
            check_writable(explain_dir, "--explain", folder=True)
        inputs = collect_inputs(list(images))
    except InputError as error:
        fail(str(error), 2)
    for note in inputs.notes:
        click.echo(f"covid-xray: note: {note}", err=True)
    problems = unreadable(inputs.paths)
    if len(problems) == len(inputs.paths):  # nothing to predict: say why without loading a model
        for path, reason in problems.items():
            click.echo(f"covid-xray: error: {path}: {reason}", err=True)
        fail(f"none of the {len(problems)} input(s) is a readable image; no model was loaded", 2)
    name = model_name_of(config, model_name)
    answer = load("answers", "answer", keras=True, verbose=verbose)
    answer(inputs.paths, name, alias, model_version, run_id, as_json, output, explain_dir, batch_size)
