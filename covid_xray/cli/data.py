"""`covid-xray data fetch --from public|store`: materialize the data with DVC and link data/raw to it."""

from __future__ import annotations

import click

from ..ops.fetch import FetchError, fetch
from .common import fail


@click.group()
def data() -> None:
    """Fetch the data: the public sources at pinned commits, or the team store.

    The configs read data/raw: `data fetch` links it to what it fetched."""


@data.command(name="fetch")
@click.option(
    "--from",
    "origin",
    type=click.Choice(["store", "public"]),
    default="store",
    show_default=True,
    help="public: each source's Git repository at its pinned commit (data/SOURCES.md); "
    "store: the team's data store beside the project (data.dvc).",
)
def fetch_command(origin: str) -> None:
    """Materialize the data with DVC and point data/raw at it; run again with the other --from to switch."""
    try:
        fetch(origin, echo=click.echo)  # type: ignore[arg-type]  # click.Choice checked it
    except FetchError as error:
        fail(str(error), error.code)
