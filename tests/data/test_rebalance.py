import numpy as np
import pandas as pd
import pytest

from covid_xray.config import RebalanceConfig
from covid_xray.data.rebalance import cap_source_share, class_weights, composition, cramers_v, rebalance


def train_rows() -> pd.DataFrame:
    rows = (
        [("ieee", "covid")] * 60 + [("nih", "normal")] * 30 + [("kaggle", "covid")] * 10 + [("kaggle", "normal")] * 20
    )
    return pd.DataFrame(rows, columns=["source", "label"])


def test_undersample_and_oversample_equalise_classes():
    assert rebalance(train_rows(), RebalanceConfig(strategy="undersample"))["label"].value_counts().to_dict() == {
        "covid": 50,
        "normal": 50,
    }
    assert rebalance(train_rows(), RebalanceConfig(strategy="oversample"))["label"].value_counts().to_dict() == {
        "covid": 70,
        "normal": 70,
    }


def test_source_cap_limits_each_source_share_of_a_class():
    capped = cap_source_share(train_rows(), max_share=0.6, seed=0)
    shares = capped.groupby("label")["source"].value_counts(normalize=True)
    assert shares.max() <= 0.6 + 1e-9
    assert shares[("covid", "ieee")] == pytest.approx(15 / 25)  # 15 ieee kept beside 10 kaggle


def test_cramers_v_is_one_when_source_gives_label_away_and_zero_when_independent():
    assert cramers_v(
        pd.DataFrame({"source": ["a"] * 5 + ["b"] * 5, "label": ["covid"] * 5 + ["normal"] * 5})
    ) == pytest.approx(1)
    mixed = pd.DataFrame({"source": ["a", "a", "b", "b"] * 5, "label": ["covid", "normal"] * 10})
    assert cramers_v(mixed) == pytest.approx(0)
    assert cramers_v(train_rows()) > cramers_v(cap_source_share(train_rows(), 0.6, 0))


def test_class_weights_balance_the_loss():
    weights = class_weights(np.array([0] * 30 + [1] * 10), 2, "class_weight")
    assert weights == pytest.approx({0: 40 / 60, 1: 40 / 20})
    assert class_weights(np.array([0, 1]), 2, "undersample") is None


def test_composition_has_totals():
    table = composition(train_rows())
    assert table.loc["total", "total"] == 120 and table.loc["kaggle", "normal"] == 20
