"""Which rows make each batch: plans that are a function of the seed and the epoch."""

import numpy as np

from covid_xray.modeling.sampling import balanced_batches, cell_ids, shuffled_batches, steps_per_epoch


def test_cells_are_the_source_label_pairs_that_exist():
    ids, cells = cell_ids(np.array(["a", "a", "b", "a"]), np.array([0, 1, 0, 0]))
    assert cells == [("a", 0), ("a", 1), ("b", 0)]
    assert ids.tolist() == [0, 1, 2, 0]


def test_balanced_plan_draws_every_cell_evenly_and_all_of_a_small_one():
    # 200 + 20 rows of source a, 5 rows of source b: plain shuffling would draw b 2% of the time.
    sources = np.array(["a"] * 220 + ["b"] * 5)
    labels = np.array([0] * 200 + [1] * 20 + [0] * 5)
    ids, cells = cell_ids(sources, labels)
    drawn = np.concatenate([np.concatenate(balanced_batches(ids, 30, seed=1, epoch=e)) for e in range(13)])
    assert len(drawn) == 13 * 8 * 30  # ceil(225 / 30) = 8 full batches an epoch
    shares = np.bincount(ids[drawn], minlength=len(cells)) / len(drawn)
    assert np.allclose(shares, 1 / 3, atol=0.03), shares
    assert set(drawn[ids[drawn] == 2]) == {220, 221, 222, 223, 224}  # the small cell is oversampled, all of it
    first = np.concatenate(balanced_batches(ids, 30, seed=1, epoch=0))
    cycle = first[ids[first] == 2]  # a cell's rows come in a shuffled order, each once before any repeats
    assert all(sorted(cycle[i : i + 5]) == [220, 221, 222, 223, 224] for i in range(0, len(cycle) - 4, 5))


def test_shuffled_plan_is_one_pass_over_every_row_in_a_new_order_each_epoch():
    epochs = [shuffled_batches(10, 4, seed=3, epoch=e) for e in range(3)]
    assert [len(b) for b in epochs[0]] == [4, 4, 2]
    assert all(sorted(np.concatenate(plan)) == list(range(10)) for plan in epochs)
    assert not np.array_equal(np.concatenate(epochs[0]), np.concatenate(epochs[1]))


def test_plans_are_the_same_for_a_seed_and_differ_between_seeds():
    ids = np.array([0, 0, 1, 1, 1, 2])
    for plan in (lambda seed, e: shuffled_batches(6, 2, seed, e), lambda seed, e: balanced_batches(ids, 2, seed, e)):
        assert all(np.array_equal(a, b) for a, b in zip(plan(5, 2), plan(5, 2)))
        assert not all(np.array_equal(a, b) for a, b in zip(plan(5, 2), plan(6, 2)))


def test_steps_per_epoch_cover_the_rows_once():
    assert steps_per_epoch(100, 32) == 4 and steps_per_epoch(1, 32) == 1
