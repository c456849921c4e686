"""`python -m covid_xray.cli`: the same as the `covid-xray` console script."""

from covid_xray.cli import entry

entry()
