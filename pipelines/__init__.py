"""ZenML pipelines of covid-xray."""
