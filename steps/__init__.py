"""ZenML steps: thin wrappers that take inputs, call the covid_xray library, log, and return named outputs."""

from . import materializers  # noqa: F401  (registers the Keras and Split materializers)
