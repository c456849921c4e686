"""Batches for `fit`, `evaluate` and `predict` under any Keras backend: `keras.utils.PyDataset`s that read a split's
rows from the image cache (or from an in-memory array aligned with the split, such as backbone features) in worker
threads, ahead of the model.

Training batches follow a plan (`sampling`: shuffled, or source x label balanced) that is a function of the seed and
the epoch, and each batch is a function of its index: the same rows in every run with the same seed, under every
backend, however many workers read them. Augmentation is not done here: it runs inside the model, on the
accelerator (`augmentation`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from ..data.parallel import available_cores
from ..data.stream import Split
from .adversarial import PROBABILITIES, SOURCE
from .sampling import balanced_batches, cell_ids, shuffled_batches

Rows = np.ndarray | Split  # what a batch reads: an in-memory array aligned with the split, or the split's pixels
READ_WORKERS = 4  # threads reading cached files ahead of the model (NumPy's file reads release the GIL)


def reader(x: Rows) -> Callable[[np.ndarray], np.ndarray]:
    """A function from row indices to those rows' model input: gathered from an in-memory array, or a split's cached
    pixels through `model_input`."""
    if isinstance(x, Split):
        return x.model_input_of
    table = np.asarray(x)
    return lambda rows: table[rows]


def _workers(x: Rows) -> dict:
    """Worker threads for reading files; an in-memory gather needs none."""
    threads = min(READ_WORKERS, 2 * available_cores()) if isinstance(x, Split) else 1
    return {"workers": threads, "use_multiprocessing": False, "max_queue_size": 4 * threads}


class TrainingBatches(keras.utils.PyDataset):
    """(input, label) batches of `split` for `fit`, by its plan: `sampling` 'shuffle' (one pass in a shuffled order) or
    'source_label' (every batch drawn evenly over the (source, label) cells). Pass `fit(shuffle=False)` and
    `callbacks=[batches.follow_epochs()]`, so each epoch reads its own plan, also when training resumes mid-way."""

    def __init__(
        self,
        split: Split,
        batch_size: int,
        sampling: str,
        seed: int = 0,
        x: Rows | None = None,
        source_targets: np.ndarray | None = None,
    ):
        x = split if x is None else x
        super().__init__(**_workers(x))
        if sampling == "source_label" and split.sources is None:
            raise ValueError("sampling: source_label needs the training rows' sources")
        self.read, self.labels = reader(x), np.asarray(split.labels).astype("int32")
        self.targets = with_sources(self.labels, source_targets)
        strata = self.labels if split.findings is None else np.asarray(split.findings)
        self.cells = cell_ids(np.asarray(split.sources), strata)[0] if sampling == "source_label" else None
        self.batch_size, self.seed, self.epoch = batch_size, seed, 0
        self.plan = self.batches(0)

    def batches(self, epoch: int) -> list[np.ndarray]:
        """The row indices of every batch of `epoch`."""
        if self.cells is not None:
            return balanced_batches(self.cells, self.batch_size, self.seed, epoch)
        return shuffled_batches(len(self.labels), self.batch_size, self.seed, epoch)

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, index: int) -> tuple[np.ndarray, Any]:
        rows = self.plan[index]
        return self.read(rows), self.targets(rows)

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.plan = epoch, self.batches(epoch)

    def follow_epochs(self) -> keras.callbacks.Callback:
        """A callback that sets the plan of each epoch as it begins (before its batches are read)."""
        return keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs=None: self.set_epoch(epoch))


class OrderedBatches(keras.utils.PyDataset):
    """Batches of a split's rows in order: (input, label) for validation data, input alone for `predict`."""

    def __init__(
        self,
        split: Split,
        batch_size: int = 32,
        x: Rows | None = None,
        labelled: bool = True,
        source_targets: np.ndarray | None = None,
    ):
        x = split if x is None else x
        super().__init__(**_workers(x))
        self.read, self.labels, self.labelled = reader(x), np.asarray(split.labels).astype("int32"), labelled
        self.targets = with_sources(self.labels, source_targets)
        self.batch_size, self.rows = batch_size, len(split)

    def __len__(self) -> int:
        return -(-self.rows // self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, ...]:
        rows = np.arange(index * self.batch_size, min((index + 1) * self.batch_size, self.rows))
        return (self.read(rows), self.targets(rows)) if self.labelled else (self.read(rows),)


def with_sources(labels: np.ndarray, source_targets: np.ndarray | None) -> Callable[[np.ndarray], Any]:
    """The targets of rows: their labels, or with `source_targets` (a source-adversarial model's) both, keyed by the
    training model's outputs."""
    if source_targets is None:
        return lambda rows: labels[rows]
    sources = np.asarray(source_targets).astype("int32")
    return lambda rows: {PROBABILITIES: labels[rows], SOURCE: sources[rows]}


def labelled_batches(
    split: Split, batch_size: int, x: Rows | None = None, source_targets: np.ndarray | None = None
) -> OrderedBatches:
    """(model input, label) batches of the split in row order: validation data for `fit`."""
    return OrderedBatches(split, batch_size, x, source_targets=source_targets)


def pixel_batches(split: Split, batch_size: int = 32) -> OrderedBatches:
    """Model input batches of the split's pixels in row order, streamed from the cache: for `predict`."""
    return OrderedBatches(split, batch_size, labelled=False)
