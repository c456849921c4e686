"""The findings a source can label an image with, the one the detector looks for, and what a model outputs under each
task: defined here and nowhere else."""

from collections.abc import Iterable, Sequence
from typing import Final, Literal, get_args

import numpy as np

ClassName = Literal["covid", "normal", "pneumonia"]
CLASSES: tuple[str, ...] = get_args(ClassName)
POSITIVE: Final[ClassName] = "covid"  # the positive class: every COVID metric is covid against the rest

# What a model is trained to tell apart.
# covid_vs_rest: covid against every other finding the run keeps (normal and other pneumonia alike), two outputs.
# three_class: covid, normal and other pneumonia, one output each.
Task = Literal["covid_vs_rest", "three_class"]
TASKS: tuple[str, ...] = get_args(Task)
REST: Final = "non_covid"  # the negative output of covid_vs_rest


def model_classes(task: str, findings: Sequence[str]) -> list[str]:
    """The model's output classes, in output order (covid first), for `task` over the kept `findings`."""
    if task == "covid_vs_rest":
        return [POSITIVE, REST]
    return [POSITIVE, *sorted(f for f in findings if f != POSITIVE)]


def as_outputs(labels: Iterable[str], classes: Sequence[str]) -> np.ndarray:
    """Ground-truth labels (findings, or a model's own class names) as the model with output `classes` names them,
    in training and in scoring: a two-output covid_vs_rest model calls every finding but covid REST."""
    values = np.asarray(list(labels), dtype=object)
    if REST in classes:
        return np.where(values == POSITIVE, POSITIVE, REST).astype(object)
    return values
