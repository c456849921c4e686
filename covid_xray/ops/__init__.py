"""Where things run and are recorded: the project's state folder and ZenML stack (`stack`), what every MLflow run
records (`tracking`), TensorFlow's start-up noise (`quiet`), and ZenML model stages that follow the MLflow aliases
(`lifecycle`).

May import every package of the library below it (`labels` to `registry`). One of the places that import zenml,
with `steps/`, `pipelines/` and `cli/`.
"""
