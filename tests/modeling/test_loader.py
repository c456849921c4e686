"""The input path of `fit` and `predict`: each training batch is its plan's rows read from the image cache, whatever
order the workers read them in, and two trainings with the same seed give the same model."""

import keras
import numpy as np
import pytest
from fixtures import tiny_split

from covid_xray.config import ModelConfig
from covid_xray.modeling.loader import OrderedBatches, TrainingBatches
from covid_xray.modeling.training import train_model


@pytest.fixture
def split(tmp_path):
    split = tiny_split(20, 0, tmp_path)
    split.sources = np.array(["a"] * 14 + ["b"] * 6)
    return split


@pytest.mark.parametrize("sampling", ["shuffle", "source_label"])
def test_each_batch_is_its_plans_rows_read_from_the_cache_in_any_order(split, sampling):
    batches = TrainingBatches(split, batch_size=4, sampling=sampling, seed=7)
    assert len(batches) == 5
    forward = [batches[i] for i in range(len(batches))]
    backward = [batches[i] for i in reversed(range(len(batches)))][::-1]  # workers may read out of order
    for (x, y), (x_again, y_again), rows in zip(forward, backward, batches.plan, strict=True):
        assert np.array_equal(x, split.model_input_of(rows)) and np.array_equal(y, split.labels[rows])
        assert np.array_equal(x, x_again) and np.array_equal(y, y_again)
    first = [rows.copy() for rows in batches.plan]
    batches.set_epoch(3)
    third = [rows.copy() for rows in batches.plan]
    batches.set_epoch(0)
    assert all(np.array_equal(a, b) for a, b in zip(first, batches.plan, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, third, strict=True))


def test_ordered_batches_are_the_rows_in_order_with_or_without_labels(split):
    labelled = OrderedBatches(split, batch_size=6)
    assert len(labelled) == 4 and labelled[3][0].shape == (2, 32, 32, 1)
    x = np.concatenate([labelled[i][0] for i in range(4)])
    assert np.array_equal(x, split.model_input_of(np.arange(20)))
    assert np.array_equal(np.concatenate([labelled[i][1] for i in range(4)]), split.labels)
    assert len(OrderedBatches(split, batch_size=6, labelled=False)[0]) == 1


def test_source_label_sampling_needs_sources(tmp_path):
    with pytest.raises(ValueError, match="source_label needs the training rows' sources"):
        TrainingBatches(tiny_split(4, 0, tmp_path), 2, "source_label")


def test_the_cnn_trains_to_the_same_model_with_the_same_seed_and_to_another_with_another(split, tmp_path):
    """The default CNN's settings (acquisition augmentation, source x label batches): the input path and the
    augmentation are deterministic, so a seed gives one model."""
    val = tiny_split(8, 100, tmp_path)

    def weights(seed: int, run: str) -> list[np.ndarray]:
        config = ModelConfig(
            name="c",
            kind="cnn",
            conv_filters=[4, 8],
            head={"dense_units": [8]},
            epochs=2,
            batch_size=4,
            augment="acquisition",
            sampling="source_label",
            seed=seed,
        )
        result = train_model(
            config,
            split,
            val,
            n_classes=2,
            image_size=32,
            image_cache_key="k",
            cache_dir=str(tmp_path / run),
            verbose=0,
        )
        return result.model.get_weights()

    first, again, other = weights(1, "a"), weights(1, "b"), weights(2, "c")
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))
    assert keras.config.dtype_policy().name == "float32"
