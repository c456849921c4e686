import numpy as np
import pytest

from covid_xray.metrics import bootstrap_auc, confusion, covid_metrics, mcnemar_worse, per_source_metrics, wilson


def test_wilson_interval_matches_reference_values():
    # Reference: Wilson score interval for 8/10 at 95%: 0.490 to 0.943
    value, low, high = wilson(8, 10)
    assert value == 0.8 and low == pytest.approx(0.4902, abs=1e-3) and high == pytest.approx(0.9433, abs=1e-3)
    assert np.isnan(wilson(0, 0)[0])


def test_bootstrap_auc_interval_is_the_percentiles_of_roc_auc_score_over_the_resamples():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    y = rng.random(40) < 0.3
    score = np.round(rng.random(40) * 0.5 + y * 0.3, 1)  # rounded: many ties, which count one half
    samples = np.random.default_rng(7).integers(0, 40, (200, 40))
    reference = [roc_auc_score(y[s], score[s]) for s in samples if 0 < y[s].sum() < 40]
    value, low, high = bootstrap_auc(y, score, n=200, seed=7)
    assert value == roc_auc_score(y, score)
    assert (low, high) == pytest.approx(tuple(np.percentile(reference, [2.5, 97.5])), abs=1e-12)
    assert np.isnan(bootstrap_auc(np.ones(5, bool), np.arange(5.0))[0])


def test_covid_metrics_counts():
    classes = ["covid", "normal"]
    labels = np.array(["covid"] * 4 + ["normal"] * 6)
    proba = np.array([[0.9, 0.1]] * 3 + [[0.2, 0.8]] + [[0.1, 0.9]] * 5 + [[0.7, 0.3]])
    m = covid_metrics(labels, proba, classes)
    assert (m["sensitivity"], m["specificity"], m["accuracy"]) == (0.75, 5 / 6, 0.8)
    assert m["ppv"] == 0.75 and m["npv"] == 5 / 6
    assert m["sensitivity_ci_low"] < 0.75 < m["sensitivity_ci_high"]
    assert 0 <= m["roc_auc_ci_low"] <= m["roc_auc"] <= m["roc_auc_ci_high"] <= 1
    table = confusion(labels, proba, classes)
    assert table.loc["true covid", "predicted covid"] == 3 and table.loc["true normal", "predicted covid"] == 1


def test_per_source_metrics_split_by_source():
    import pandas as pd

    frame = pd.DataFrame({"source": ["a", "a", "b", "b"], "label": ["covid", "normal", "covid", "normal"]})
    proba = np.array([[0.9, 0.1], [0.1, 0.9], [0.1, 0.9], [0.1, 0.9]])
    table = per_source_metrics(frame, proba, ["covid", "normal"]).set_index("source")
    assert table.loc["a", "accuracy"] == 1.0 and table.loc["b", "sensitivity"] == 0.0


def test_mcnemar_flags_a_clearly_worse_candidate_only():
    champion = np.array([True] * 90 + [False] * 10)
    worse = champion.copy()
    worse[:20] = False
    b, c, p = mcnemar_worse(worse, champion)
    assert (b, c) == (20, 0) and p < 0.001
    _, _, p_same = mcnemar_worse(champion, champion)
    assert p_same == 1.0
