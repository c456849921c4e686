"""The paired non-inferiority test of candidate vs champion, on constructed predictions."""

import numpy as np
import pytest

from covid_xray.evaluation.comparison import compare


def cohort(patients: int, per_patient: int = 2):
    """Half the patients covid; every image of a patient shares its label."""
    groups = np.repeat([f"p{i:03d}" for i in range(patients)], per_patient)
    truth = np.where(np.repeat(np.arange(patients) % 2 == 0, per_patient), "covid", "normal")
    return truth, groups


def with_errors(truth: np.ndarray, wrong: np.ndarray) -> np.ndarray:
    """The true labels with the rows in `wrong` flipped."""
    predicted = truth.copy()
    predicted[wrong] = np.where(truth[wrong] == "covid", "normal", "covid")
    return predicted


def spread(n: int, count: int, offset: int = 0) -> np.ndarray:
    """`count` row indices spread evenly over `n` rows (so both classes get errors)."""
    return (np.linspace(0, n - 1, count).astype(int) + offset) % n


def test_clearly_better_candidate_is_better():
    truth, groups = cohort(150)  # 300 images
    champion = with_errors(truth, spread(300, 60))  # 80% right
    candidate = with_errors(truth, spread(300, 15, 1))  # 95% right
    result = compare(truth, candidate, champion, groups, margin=0.02)
    assert result.outcome == "better" and result.promotes
    assert result.ci_low > 0 and result.difference == pytest.approx(0.15, abs=0.01)
    assert result.images == 300 and result.patients == 150 and result.resamples == 2000


def test_equal_within_margin_is_non_inferior_even_when_raw_accuracy_is_lower():
    """The old gate rejected any candidate below the champion's accuracy; noise of one image is no evidence."""
    truth, groups = cohort(200)  # 400 images
    champion = with_errors(truth, spread(400, 40))  # 90.0%
    candidate = with_errors(truth, np.concatenate([spread(400, 40)[:36], [1, 2, 3, 4, 5]]))  # 89.75%: 36 shared
    assert (candidate == truth).mean() < (champion == truth).mean()
    result = compare(truth, candidate, champion, groups, margin=0.05)
    assert result.outcome == "non-inferior" and result.promotes
    assert -0.05 < result.ci_low < 0 < result.ci_high


def test_clearly_worse_candidate_is_rejected_by_the_test():
    truth, groups = cohort(150)
    champion = with_errors(truth, spread(300, 15))  # 95%
    candidate = with_errors(truth, spread(300, 75, 1))  # 75%
    result = compare(truth, candidate, champion, groups, margin=0.02)
    assert result.outcome == "inferior" and not result.promotes
    assert result.ci_high < 0


def test_a_small_difference_on_few_patients_is_inconclusive():
    truth, groups = cohort(40, per_patient=2)  # 80 images: enough to test, too few to tell 4 points apart
    champion = with_errors(truth, spread(80, 8))
    candidate = with_errors(truth, spread(80, 11, 1))
    result = compare(truth, candidate, champion, groups, margin=0.02, min_images=50, min_patients=30)
    assert result.outcome == "inconclusive" and not result.promotes
    assert result.ci_low < -0.02 and result.ci_high > 0


def test_too_few_unseen_images_decides_nothing():
    truth, groups = cohort(10)
    champion = with_errors(truth, spread(20, 10))  # far worse, but on 20 images of 10 patients
    result = compare(truth, truth.copy(), champion, groups, min_images=50, min_patients=30)
    assert result.outcome == "insufficient" and not result.promotes
    assert (
        "20 unseen test images of 10 patients are too few for the test to have power (minimum 50 images of 30 patients)"
        in result.summary
    )


def test_patients_not_images_are_resampled():
    """Ten images per patient that are right or wrong together carry the evidence of one: a wider interval."""
    truth, groups = cohort(40, per_patient=10)
    wrong_patients = np.isin(groups, [f"p{i:03d}" for i in (1, 2, 5, 9, 12, 20)])
    champion = with_errors(truth, np.flatnonzero(wrong_patients))
    candidate = truth.copy()
    by_patient = compare(truth, candidate, champion, groups, min_patients=10)
    by_image = compare(truth, candidate, champion, np.arange(len(truth)).astype(str), min_patients=10)
    assert by_patient.ci_high - by_patient.ci_low > 1.5 * (by_image.ci_high - by_image.ci_low)


def test_metric_is_the_configured_one():
    """Balanced accuracy weighs the 20 covid images like the 180 normal ones; accuracy does not."""
    truth = np.array(["covid"] * 20 + ["normal"] * 180)
    groups = np.arange(200).astype(str)
    champion = truth.copy()
    candidate = with_errors(truth, np.arange(10))  # misses half the covid images: 95% accurate
    assert compare(truth, candidate, champion, groups, metric="accuracy", margin=0.1).outcome == "non-inferior"
    balanced = compare(truth, candidate, champion, groups, metric="balanced_accuracy", margin=0.1)
    assert balanced.outcome == "inferior" and balanced.difference == pytest.approx(-0.25)


def test_unaligned_inputs_are_an_error():
    with pytest.raises(ValueError, match="unaligned"):
        compare(np.array(["covid"]), np.array(["covid", "normal"]), np.array(["covid"]), np.array(["a"]))
