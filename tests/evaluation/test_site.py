"""The site report's numbers, without a model: the threshold chosen on one patient-level half and scored on the
other, strict JSON, and everything left out listed."""

import json

import numpy as np
import pandas as pd
import pytest

from covid_xray.evaluation.metrics import covid_metrics
from covid_xray.evaluation.site import proba_matrix, site_report, threshold_at_site, write_report

CLASSES = ["covid", "normal"]


def site(n_patients: int = 40, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    patients = np.repeat([f"p{i}" for i in range(n_patients)], 2)
    labels = np.where(np.repeat(np.arange(n_patients) % 2 == 0, 2), "covid", "normal")
    p = np.clip(np.where(labels == "covid", 0.35, 0.15) + rng.normal(0, 0.12, len(labels)), 0, 1)  # shifted low
    rows = pd.DataFrame({"label": labels, "patient_id": patients, "view": "PA", "sex": "F", "age": 50.0})
    return rows, p


def test_the_site_threshold_is_chosen_on_one_half_of_the_patients_and_scored_on_the_other():
    rows, p = site()
    proba = proba_matrix(p, CLASSES)
    result = threshold_at_site(rows["label"].to_numpy(), proba, CLASSES, rows["patient_id"].to_numpy(), 0.5)
    assert result["chosen_on"]["patients"] + result["scored_on"]["patients"] == 40
    assert result["chosen_on"]["images"] + result["scored_on"]["images"] == 80
    # this site's probabilities sit below the recorded 0.5: a site threshold lower, and better on the unseen half
    assert result["site_threshold"] < 0.5
    assert result["at_site"]["balanced_accuracy"] > result["at_recorded"]["balanced_accuracy"]
    assert result["at_recorded"]["n"] == result["scored_on"]["images"]


def test_one_class_or_too_few_patients_says_no_threshold_can_be_chosen():
    rows, p = site(n_patients=3)
    proba = proba_matrix(p, CLASSES)
    groups = rows["patient_id"].to_numpy()
    assert "too few patients" in threshold_at_site(rows["label"].to_numpy(), proba, CLASSES, groups, 0.5)["note"]


def test_the_report_is_strict_json_with_everything_left_out_listed(tmp_path):
    rows, p = site()
    drops = pd.DataFrame([{"source": "site", "item": "normal/readme.txt", "reason": "not an image file name"}])
    refused = {"normal/notes.png": "not a readable image (UnidentifiedImageError)"}
    report = site_report(rows, p, np.zeros(len(p), bool), CLASSES, 0.5, "m v1", refused, drops)
    expected = covid_metrics(rows["label"], proba_matrix(p, CLASSES), CLASSES, rows["patient_id"].to_numpy(), 0.5)
    assert report["at_recorded_threshold"]["sensitivity"] == pytest.approx(expected["sensitivity"])
    assert report["out_of_distribution_rate"] == 0.0
    assert report["images"] == {
        "answered": 80,
        "refused_by_the_model": 1,
        "dropped_by_the_reader": 1,
        "patients": 40,
        "covid": 40,
    }
    json_path, html_path = write_report(report, tmp_path / "out")
    loaded = json.loads(json_path.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in strict JSON"))
    assert loaded["subgroups"][0]["attribute"] == "view"
    page = html_path.read_text()
    assert "normal/notes.png" in page and "not an image file name" in page
    assert "Youden's rule on a patient-level half" in page
