"""`covid-xray evaluate SITE`: how a registered model does at your site. SITE is read and checked first (a folder of
class folders or a CSV list, by the project's readers), in under two seconds; then the model answers every image and
the report is written and logged (`cli.site_answers`)."""

from __future__ import annotations

from pathlib import Path

import click

from ..evaluation.site import site_rows
from ..serving.inputs import InputError, check_writable
from ..sources.base import SourceError
from . import load
from .common import fail, model_name_of, one_model_choice, store, verbose_option


@click.command()
@click.argument("site")
@click.option("--model-name", default=None, help="Registered model [default: the config's, else covid-xray].")
@click.option("--alias", default=None, help="Registry alias to evaluate [default: champion].")
@click.option("--model-version", default=None, help="Registered version number to evaluate instead of an alias.")
@click.option("--out", "out", default=None, help="Folder for report.json and report.html [default: site-report/].")
@click.option("--config", "config_path", default=None, help="Take the tracking URI and model name from this config.")
@verbose_option
def evaluate(
    site: str,
    model_name: str | None,
    alias: str | None,
    model_version: str | None,
    out: str | None,
    config_path: str | None,
    verbose: bool,
) -> None:
    """Evaluate a registered model on labelled images from your site (SITE).

    Metrics at its recorded threshold with patient-group intervals, calibration, a threshold re-chosen at the site,
    the out-of-distribution rate and subgroups, as report.json and report.html, logged to MLflow.

    SITE is a folder with one sub-folder per class (covid, normal; DICOM, PNG, JPEG...) or a CSV list with the
    columns path and label (and optionally patient_id, view, sex, age)."""
    one_model_choice(alias=alias, model_version=model_version)
    config, _ = store(config_path)
    folder = Path(out or "site-report")
    try:
        check_writable(folder, "--out", folder=True)
        rows, drops = site_rows(Path(site))
    except (InputError, SourceError) as error:
        fail(str(error), 2)
    if rows.empty:
        fail(f"{site}: no labelled image to evaluate ({len(drops)} item(s) dropped, e.g. {_first(drops)})", 2)
    name = model_name_of(config, model_name)
    answer = load("site_answers", "answer_site", keras=True, verbose=verbose)
    answer(site, rows, drops, name, alias, model_version, folder)


def _first(drops) -> str:
    return "nothing" if drops.empty else f"{drops.iloc[0]['item']}: {drops.iloc[0]['reason']}"
