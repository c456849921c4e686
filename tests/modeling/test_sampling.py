import numpy as np

from covid_xray.modeling.sampling import augment_batch, balanced_dataset, cell_ids, random_gamma, steps_per_epoch


def test_cells_are_the_source_label_pairs_that_exist():
    ids, cells = cell_ids(np.array(["a", "a", "b", "a"]), np.array([0, 1, 0, 0]))
    assert cells == [("a", 0), ("a", 1), ("b", 0)]
    assert ids.tolist() == [0, 1, 2, 0]


def test_balanced_sampler_draws_every_cell_evenly():
    # 200 + 20 rows of source a, 5 rows of source b: plain shuffling would draw b 2% of the time.
    sources = np.array(["a"] * 220 + ["b"] * 5)
    labels = np.array([0] * 200 + [1] * 20 + [0] * 5)
    ids, cells = cell_ids(sources, labels)
    x = np.arange(len(labels), dtype=np.float32)[:, None]
    batches = list(balanced_dataset(x, labels, ids, batch_size=30, seed=1).take(100))
    drawn = np.concatenate([batch_x.numpy()[:, 0] for batch_x, _ in batches]).astype(int)
    assert np.array_equal(np.concatenate([batch_y.numpy() for _, batch_y in batches]), labels[drawn])
    shares = np.bincount(ids[drawn], minlength=len(cells)) / len(drawn)
    assert len(drawn) == 3000
    assert np.allclose(shares, 1 / 3, atol=0.03), shares
    assert set(drawn[ids[drawn] == 2]) == {220, 221, 222, 223, 224}  # the small cell is oversampled, all of it


def test_steps_per_epoch_cover_the_rows_once():
    assert steps_per_epoch(100, 32) == 4 and steps_per_epoch(1, 32) == 1


def test_gamma_keeps_range_and_endpoints():
    images = np.tile(np.linspace(0, 255, 16, dtype=np.float32), (4, 16, 1))[..., None]
    out = random_gamma(images, seed=3).numpy()
    assert out.min() >= 0 and out.max() <= 255.001
    assert np.allclose(out[:, :, 0], 0) and np.allclose(out[:, :, -1], 255)
    assert not np.allclose(out, images)


def test_acquisition_augmentation_changes_pixels_keeps_shape_and_labels():
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 1)).astype(np.float32)
    labels = np.array([0, 1, 0, 1], np.int32)
    out, out_labels = augment_batch("acquisition", seed=0)(images, labels)
    assert out.shape == images.shape and np.array_equal(out_labels, labels)
    assert float(np.abs(out.numpy() - images).mean()) > 1.0
    assert float(out.numpy().min()) >= 0.0 and float(out.numpy().max()) <= 255.0
    assert augment_batch("none") is None
