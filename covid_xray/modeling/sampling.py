"""Which rows make each training batch: shuffled, or drawn evenly over the (source, label) cells.

When most COVID images come from one hospital and most normals from another, a shuffled batch teaches the model the
hospital. Drawing evenly over the (source, label) cells that exist makes every source's own COVID/normal contrast count
as much as the contrast between sources.

Plans are NumPy only and a function of (seed, epoch): the batches drawn are the same under every Keras backend and in
every run with the same seed, however many workers read them.
"""

from __future__ import annotations

import math

import numpy as np


def cell_ids(sources: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, list[tuple[str, int]]]:
    """Integer id of each row's (source, label) cell, and the cells in id order."""
    cells = sorted(set(zip(sources.tolist(), labels.tolist(), strict=True)))
    index = {cell: i for i, cell in enumerate(cells)}
    return np.array([index[cell] for cell in zip(sources.tolist(), labels.tolist(), strict=True)], np.int64), cells


def steps_per_epoch(n_rows: int, batch_size: int) -> int:
    """As many batches as one pass over the rows would take."""
    return max(1, math.ceil(n_rows / batch_size))


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The random stream of one epoch of a plan: independent of every other epoch and of the order batches are read."""
    return np.random.default_rng([seed, epoch])


def shuffled_batches(n_rows: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """One pass over the rows in a shuffled order, cut into batches (the last one may be smaller)."""
    order = epoch_rng(seed, epoch).permutation(n_rows)
    return [order[start : start + batch_size] for start in range(0, n_rows, batch_size)]


def balanced_batches(cells: np.ndarray, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """`steps_per_epoch(len(cells), batch_size)` full batches whose every row is drawn from a cell chosen with equal
    probability; within a cell rows come in a shuffled order, reshuffled each time the cell is used up, so small
    cells are oversampled and large ones subsampled."""
    rng = epoch_rng(seed, epoch)
    members = [rng.permutation(np.flatnonzero(cells == cell)) for cell in np.unique(cells)]
    draws = rng.integers(0, len(members), steps_per_epoch(len(cells), batch_size) * batch_size)
    rows, taken = np.empty(len(draws), np.int64), np.zeros(len(members), np.int64)
    for position, cell in enumerate(draws):
        pool = members[cell]
        if taken[cell] == len(pool):
            members[cell], taken[cell] = rng.permutation(pool), 0
            pool = members[cell]
        rows[position] = pool[taken[cell]]
        taken[cell] += 1
    return list(rows.reshape(-1, batch_size))
