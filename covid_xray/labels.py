"""The classes a source can label an image with, and the one the detector looks for: defined here and nowhere else."""

from typing import Final, Literal, get_args

ClassName = Literal["covid", "normal", "pneumonia"]
CLASSES: tuple[str, ...] = get_args(ClassName)
POSITIVE: Final[ClassName] = "covid"  # the positive class: every COVID metric is covid against the rest
