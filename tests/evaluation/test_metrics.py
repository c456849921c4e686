import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from covid_xray.evaluation.metrics import (
    PROPORTIONS,
    bootstrap_auc,
    confusion,
    covid_metrics,
    group_bootstrap_indices,
    group_bootstrap_samples,
    group_resample_counts,
    paired_group_bootstrap,
    per_source_metrics,
    wilson,
)

CLASSES = ["covid", "normal", "pneumonia"]


def test_wilson_interval_matches_reference_values():
    # Reference: Wilson score interval for 8/10 at 95%: 0.490 to 0.943
    value, low, high = wilson(8, 10)
    assert value == 0.8 and low == pytest.approx(0.4902, abs=1e-3) and high == pytest.approx(0.9433, abs=1e-3)
    assert np.isnan(wilson(0, 0)[0])


def test_bootstrap_auc_interval_is_the_percentiles_of_roc_auc_score_over_the_resamples():
    rng = np.random.default_rng(3)
    y = rng.random(40) < 0.3
    score = np.round(rng.random(40) * 0.5 + y * 0.3, 1)  # rounded: many ties, which count one half
    samples = np.random.default_rng(7).integers(0, 40, (200, 40))
    reference = [roc_auc_score(y[s], score[s]) for s in samples if 0 < y[s].sum() < 40]
    value, low, high = bootstrap_auc(y, score, n=200, seed=7)
    assert value == roc_auc_score(y, score)
    assert (low, high) == pytest.approx(tuple(np.percentile(reference, [2.5, 97.5])), abs=1e-12)
    assert np.isnan(bootstrap_auc(np.ones(5, bool), np.arange(5.0))[0])


def patients(n_patients: int, seed: int, per_patient=(1, 8)):
    """Labels, three-class probabilities and patient groups: a patient's images share label and difficulty."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(per_patient[0], per_patient[1] + 1, n_patients)
    groups = np.repeat([f"p{i}" for i in range(n_patients)], sizes)
    patient_label = rng.choice(CLASSES, n_patients, p=[0.4, 0.4, 0.2])
    labels = np.repeat(patient_label, sizes)
    difficulty = np.repeat(rng.normal(0, 1.2, n_patients), sizes)
    logits = rng.normal(0, 0.5, (len(labels), 3)) + np.equal.outer(labels, CLASSES) * (1 + difficulty[:, None])
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return labels, np.round(proba, 2), groups  # rounded: tied scores across patients


def test_group_resample_counts_are_the_draws_of_group_bootstrap_indices():
    _, _, groups = patients(30, seed=1)
    codes, counts = group_resample_counts(groups, n=50, seed=4)
    for resample, indices in zip(counts, group_bootstrap_indices(groups, n=50, seed=4)):
        assert np.array_equal(np.bincount(indices, minlength=len(groups)), resample[codes])


def test_group_intervals_equal_sklearn_over_the_same_patient_resamples():
    labels, proba, groups = patients(60, seed=2)
    threshold = 0.3
    m = covid_metrics(labels, proba, CLASSES, groups=groups, threshold=threshold, n=200, seed=5)
    predicted = np.where(proba[:, 0] >= threshold, "covid", np.array(CLASSES)[1:][proba[:, 1:].argmax(1)])
    y, y_hat = labels == "covid", predicted == "covid"
    scores = {
        "accuracy": lambda i: accuracy_score(y[i], y_hat[i]),  # covid against the rest, for three classes too
        "sensitivity": lambda i: recall_score(y[i], y_hat[i], zero_division=np.nan),
        "specificity": lambda i: recall_score(~y[i], ~y_hat[i], zero_division=np.nan),
        "ppv": lambda i: precision_score(y[i], y_hat[i], zero_division=np.nan),
        "npv": lambda i: precision_score(~y[i], ~y_hat[i], zero_division=np.nan),
        "balanced_accuracy": lambda i: balanced_accuracy_score(y[i], y_hat[i]),
        "f1": lambda i: f1_score(y[i], y_hat[i], zero_division=np.nan),
        "roc_auc": lambda i: roc_auc_score(y[i], proba[i, 0]),
    }
    samples = group_bootstrap_samples(labels, predicted, groups, proba[:, 0], n=200, seed=5)
    everything = np.arange(len(labels))
    resamples = group_bootstrap_indices(groups, n=200, seed=5)
    for name, score in scores.items():
        assert m[name] == pytest.approx(score(everything), abs=1e-12), name
        reference = np.array([score(i) for i in resamples])
        assert np.allclose(samples[name], reference, atol=1e-12, equal_nan=True), name
        low, high = np.nanpercentile(reference, [2.5, 97.5])
        if name in PROPORTIONS:  # never narrower than the Wilson interval
            low, high = min(low, m[f"{name}_wilson_low"]), max(high, m[f"{name}_wilson_high"])
        assert (m[f"{name}_ci_low"], m[f"{name}_ci_high"]) == pytest.approx((low, high), abs=1e-12), name
        assert m[f"{name}_ci_low"] <= m[name] <= m[f"{name}_ci_high"], name
    assert m["n"] == len(labels) and m["n_groups"] == 60 and m["n_covid"] == y.sum()


def test_many_images_per_patient_widen_the_interval_beyond_the_image_intervals():
    # 40 patients with 10 images each; a patient's images are all right or all wrong.
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(40), 10)
    labels = np.repeat(np.array(["covid", "normal"] * 20), 10)
    right = np.repeat(rng.random(40) < 0.75, 10)
    p_covid = np.where((labels == "covid") == right, 0.8, 0.2)
    proba = np.stack([p_covid, 1 - p_covid], 1)
    by_patient = covid_metrics(labels, proba, ["covid", "normal"], groups=groups)
    by_image = covid_metrics(labels, proba, ["covid", "normal"])
    assert by_patient["accuracy"] == by_image["accuracy"] and by_patient["n_groups"] == 40
    for name in ("accuracy", "sensitivity", "specificity", "balanced_accuracy", "roc_auc"):
        patient_width = by_patient[f"{name}_ci_high"] - by_patient[f"{name}_ci_low"]
        assert patient_width > 2 * (by_image[f"{name}_ci_high"] - by_image[f"{name}_ci_low"]), name
    for name in ("accuracy", "sensitivity", "specificity"):
        wilson_width = by_patient[f"{name}_wilson_high"] - by_patient[f"{name}_wilson_low"]
        assert by_patient[f"{name}_ci_high"] - by_patient[f"{name}_ci_low"] > 2 * wilson_width, name


def test_one_patient_gives_a_zero_width_bootstrap_and_proportions_keep_their_wilson_width():
    labels = np.array(["covid", "covid", "normal", "normal"])
    proba = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.6, 0.4]])
    one = covid_metrics(labels, proba, ["covid", "normal"], groups=["p"] * 4)
    assert one["n_groups"] == 1
    for name in ("balanced_accuracy", "roc_auc"):
        assert one[f"{name}_ci_low"] == one[name] == one[f"{name}_ci_high"], name
    for name in ("accuracy", "sensitivity", "specificity"):
        wilson_interval = (one[f"{name}_wilson_low"], one[f"{name}_wilson_high"])
        assert (one[f"{name}_ci_low"], one[f"{name}_ci_high"]) == wilson_interval, name

    covid_only = covid_metrics(labels[:2], proba[:2], ["covid", "normal"], groups=["a", "b"])
    assert covid_only["sensitivity"] == 0.5 and covid_only["sensitivity_ci_low"] == 0.0
    assert covid_only["sensitivity_ci_high"] == 1.0
    assert covid_only["npv"] == 0.0  # the missed covid image is a false negative
    for name in ("specificity", "balanced_accuracy", "roc_auc"):
        assert np.isnan([covid_only[name], covid_only[f"{name}_ci_low"], covid_only[f"{name}_ci_high"]]).all(), name
    with pytest.raises(ValueError, match="groups has 3 entries and predicted 4 for 4 labels"):
        covid_metrics(labels, proba, ["covid", "normal"], groups=["a", "b", "c"])


def test_four_of_four_patients_right_is_not_a_certain_sensitivity():
    labels = np.array(["covid"] * 4 + ["normal"] * 4)
    proba = np.array([[0.9, 0.1]] * 4 + [[0.1, 0.9]] * 4)
    m = covid_metrics(labels, proba, ["covid", "normal"], groups=list("abcdefgh"))
    # Every resample of 4 of 4 is 4 of 4: the bootstrap alone would claim [1, 1].
    assert np.nanmin(group_bootstrap_samples(labels, labels, list("abcdefgh"))["sensitivity"]) == 1.0
    assert m["sensitivity"] == 1.0 and m["sensitivity_ci_high"] == 1.0
    assert m["sensitivity_ci_low"] == m["sensitivity_wilson_low"] == pytest.approx(0.51, abs=0.01)


def test_covid_metrics_counts_at_the_threshold():
    classes = ["covid", "normal"]
    labels = np.array(["covid"] * 4 + ["normal"] * 6)
    proba = np.array([[0.9, 0.1]] * 3 + [[0.2, 0.8]] + [[0.1, 0.9]] * 5 + [[0.7, 0.3]])
    m = covid_metrics(labels, proba, classes)
    assert (m["sensitivity"], m["specificity"], m["accuracy"]) == (0.75, 5 / 6, 0.8)
    assert m["ppv"] == 0.75 and m["npv"] == 5 / 6
    assert m["sensitivity_wilson_low"] < 0.75 < m["sensitivity_wilson_high"]
    assert 0 <= m["roc_auc_ci_low"] <= m["roc_auc"] <= m["roc_auc_ci_high"] <= 1
    table = confusion(labels, proba, classes)
    assert table.loc["true covid", "predicted covid"] == 3 and table.loc["true normal", "predicted covid"] == 1
    strict = covid_metrics(labels, proba, classes, threshold=0.8)  # the 0.7 normal image is no longer covid
    assert (strict["sensitivity"], strict["specificity"]) == (0.75, 1.0)
    assert confusion(labels, proba, classes, threshold=0.15).loc["true covid", "predicted covid"] == 4


def test_per_source_metrics_split_by_source_and_resample_its_patients():
    frame = pd.DataFrame(
        {
            "source": ["a", "a", "b", "b"],
            "label": ["covid", "normal", "covid", "normal"],
            "group_id": ["a1", "a2", "b1", "b1"],
        }
    )
    proba = np.array([[0.9, 0.1], [0.1, 0.9], [0.3, 0.7], [0.1, 0.9]])
    table = per_source_metrics(frame, proba, ["covid", "normal"]).set_index("source")
    assert table.loc["a", "accuracy"] == 1.0 and table.loc["b", "sensitivity"] == 0.0
    assert table["n_groups"].tolist() == [2, 1]
    assert per_source_metrics(frame, proba, ["covid", "normal"], threshold=0.25).loc[1, "sensitivity"] == 1.0


def test_paired_group_bootstrap_resamples_the_same_patients_for_both_models():
    labels, proba, groups = patients(80, seed=3)
    champion = np.where(proba[:, 0] >= 0.5, "covid", "normal")
    candidate = np.where(proba[:, 0] >= 0.35, "covid", "normal")
    delta, low, high, samples = paired_group_bootstrap(labels, candidate, champion, groups, n=400, seed=2)
    y = labels == "covid"

    def balanced(predicted, i):
        return balanced_accuracy_score(y[i], predicted[i] == "covid")

    assert delta == pytest.approx(balanced(candidate, slice(None)) - balanced(champion, slice(None)), abs=1e-12)
    reference = [balanced(candidate, i) - balanced(champion, i) for i in group_bootstrap_indices(groups, 400, 2)]
    assert np.allclose(samples, reference, atol=1e-12) and len(samples) == 400
    assert (low, high) == pytest.approx(tuple(np.percentile(reference, [2.5, 97.5])), abs=1e-12)
    # Pairing: the interval of the difference is narrower than either model's own interval.
    own = covid_metrics(labels, proba, CLASSES, groups=groups, n=400, seed=2)
    assert high - low < own["balanced_accuracy_ci_high"] - own["balanced_accuracy_ci_low"]

    assert paired_group_bootstrap(labels, champion, champion, groups, n=100)[:3] == (0.0, 0.0, 0.0)
    always_covid = np.full(len(labels), "covid")
    delta, low, high, _ = paired_group_bootstrap(labels, labels, always_covid, groups, metric="accuracy", n=200)
    assert delta == pytest.approx(1 - y.mean()) and low > 0.3
    with pytest.raises(ValueError, match="unknown metric 'roc_auc'"):
        paired_group_bootstrap(labels, candidate, champion, groups, metric="roc_auc")
    with pytest.raises(ValueError, match=f"differ in length: {len(labels)}, 9, {len(labels)}, {len(labels)}"):
        paired_group_bootstrap(labels, candidate[:9], champion, groups)


def test_evaluation_sized_intervals_are_fast():
    import time

    labels, proba, groups = patients(400, seed=4, per_patient=(1, 3))
    start = time.perf_counter()
    covid_metrics(labels, proba, CLASSES, groups=groups)
    assert time.perf_counter() - start < 1.0
