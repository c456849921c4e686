"""Subgroup results: every group reported, intervals only where there are enough patients of both classes."""

import math

import numpy as np
import pandas as pd
import pytest

from covid_xray.evaluation.metrics import covid_metrics
from covid_xray.evaluation.subgroups import MIN_PATIENTS, age_band, subgroup_metrics, subgroup_table
from covid_xray.sources.base import age_years, sex_name

CLASSES = ["covid", "normal"]


def test_ages_and_sexes_are_read_however_a_source_writes_them_and_banded():
    assert [age_years(v) for v in ("65", 65.0, "045Y", "006M")] == [65.0, 65.0, 45.0, 0.5]
    assert math.isnan(age_years("")) and math.isnan(age_years("old")) and math.isnan(age_years("400"))
    assert [sex_name(v) for v in ("F", "female", "m", "O", "", None)] == ["F", "F", "M", "other", "unknown", "unknown"]
    assert [age_band(a) for a in (0.5, 17.9, 18, 59, 60, 85, float("nan"))] == [
        "0-17",
        "0-17",
        "18-39",
        "40-59",
        "60-79",
        "80+",
        "unknown",
    ]


def test_every_group_is_reported_and_small_ones_say_so_instead_of_an_interval():
    rng = np.random.default_rng(0)
    n = 120
    labels = np.where(np.arange(n) % 2 == 0, "covid", "normal")
    p_covid = np.clip(np.where(labels == "covid", 0.7, 0.3) + rng.normal(0, 0.2, n), 0, 1)
    proba = np.column_stack([p_covid, 1 - p_covid])
    frame = pd.DataFrame(
        {
            "label": labels,
            "group_id": [f"p{i // 2}" for i in range(n)],  # two images per patient
            "view": ["PA"] * 100 + ["AP"] * 20,
            "sex": ["F"] * 60 + ["M"] * 56 + ["unknown"] * 4,
            "age": [30.0] * 50 + [70.0] * 66 + [float("nan")] * 4,
        }
    )
    table = subgroup_metrics(frame, proba, CLASSES, threshold=0.5).set_index(["attribute", "group"])
    assert sorted(table.index) == sorted(
        [("view", "PA"), ("view", "AP"), ("sex", "F"), ("sex", "M"), ("sex", "unknown")]
        + [("age_band", "18-39"), ("age_band", "60-79"), ("age_band", "unknown")]
    )
    pa = table.loc[("view", "PA")]
    mask = (frame["view"] == "PA").to_numpy()
    expected = covid_metrics(labels[mask], proba[mask], CLASSES, frame["group_id"].to_numpy()[mask], 0.5)
    assert (pa["n"], pa["patients"]) == (100, 50) and pa["note"] == ""
    assert pa["accuracy"] == pytest.approx(expected["accuracy"])
    assert pa["accuracy_ci_low"] == pytest.approx(expected["accuracy_ci_low"])
    unknown = table.loc[("sex", "unknown")]
    assert unknown["patients"] == 2 < MIN_PATIENTS and unknown["note"] == "too small for an interval (2 patients)"
    assert math.isnan(unknown["accuracy_ci_low"]) and not math.isnan(unknown["accuracy"])
    markdown = subgroup_table(table.reset_index())
    assert "| sex | unknown | 4 | 2 | 2 |" in markdown and "too small for an interval (2 patients)" in markdown
    assert f"{pa['accuracy']:.3f} [{pa['accuracy_ci_low']:.2f}, {pa['accuracy_ci_high']:.2f}]" in markdown
