import pandas as pd

from covid_xray.config import ValidationConfig
from covid_xray.data.validation import validate_manifest

CLASSES = ["covid", "normal"]


def good_manifest() -> pd.DataFrame:
    rows = []
    for i in range(24):
        rows.append(
            {
                "source": "a" if i % 3 else "b",
                "path": f"/data/{i}.png",
                "label": CLASSES[i % 2],
                "patient_id": f"p{i}",
                "group_id": f"p{i}",
                "view": "PA",
                "modality": "X-ray",
                "sha256": f"{i:064x}",
                "width": 512,
                "height": 480,
                "split": ("train", "val", "test")[i // 2 % 3],
            }
        )
    return pd.DataFrame(rows)


def config(**changes) -> ValidationConfig:
    return ValidationConfig(min_images_per_class=5, min_images_per_split_class=2, **changes)


def test_a_clean_manifest_passes_every_expectation():
    report = validate_manifest(good_manifest(), config(), CLASSES)
    assert report.success, report.message()
    assert len(report.checks) == 12


def failures(frame: pd.DataFrame, **changes) -> list[str]:
    report = validate_manifest(frame, config(**changes), CLASSES)
    return [f"{c.table}:{c.expectation}:{c.column}:{c.unexpected_count}" for c in report.failures]


def test_each_broken_rule_is_named_with_its_count():
    frame = good_manifest()
    frame.loc[0, "label"] = "pneumonia"
    frame.loc[1, "patient_id"] = None
    frame.loc[2, "sha256"] = frame.loc[3, "sha256"]
    frame.loc[4, "view"] = "L"
    frame.loc[5, "modality"] = "CT"
    frame.loc[6, "width"] = 20
    assert failures(frame) == [
        "manifest:expect_column_values_to_be_in_set:label:1",
        "manifest:expect_column_values_to_not_be_null:patient_id:1",
        "manifest:expect_column_values_to_be_unique:sha256:2",
        "manifest:expect_column_values_to_be_in_set:view:1",
        "manifest:expect_column_values_to_be_in_set:modality:1",
        "manifest:expect_column_values_to_be_between:width:1",
    ]


def test_group_level_rules_split_leak_small_class_and_dominant_source():
    frame = good_manifest()
    frame.loc[0, "group_id"] = frame.loc[2, "group_id"]  # rows 0 and 2 are in train and val
    assert failures(frame) == ["group_splits:expect_column_values_to_be_between:splits:1"]
    assert failures(good_manifest(), max_source_share_in_class=0.6) == [
        "source_shares:expect_column_values_to_be_between:share:2"
    ]
    few = good_manifest()
    few = few[(few["label"] == "covid") | (few.index < 8)]
    found = failures(few)
    assert "class_counts:expect_column_values_to_be_between:count:1" in found


def test_report_message_names_expectation_count_and_examples():
    frame = good_manifest()
    frame.loc[0, "label"] = "pneumonia"
    report = validate_manifest(frame, config(), CLASSES)
    assert (
        "[FAILED] manifest: expect_column_values_to_be_in_set(label): 1 unexpected, e.g. ['pneumonia']"
        in report.message()
    )
    assert "FAILED" in report.to_html() and "<table>" in report.to_html()


def test_a_source_whose_drops_dwarf_what_it_kept_fails_naming_it():
    frame = good_manifest()  # source a keeps 16 images, b keeps 8
    missing = [{"source": "a", "item": f"row {i}", "reason": "image file missing: x.png"} for i in range(1_000)]
    some = [{"source": "b", "item": f"row {i}", "reason": "exact duplicate"} for i in range(8)]
    report = validate_manifest(frame, config(), CLASSES, pd.DataFrame(missing + some))
    [failure] = report.failures
    assert (failure.table, failure.column, failure.unexpected_count) == ("source_drops", "dropped_fraction", 1)
    assert failure.examples[0]["source"] == "a" and failure.examples[0]["dropped"] == 1_000
    assert "source_drops" in report.message() and len(report.checks) == 13
    # b's half dropped is under the default 0.9; at 0.4 it fails too
    assert validate_manifest(frame, config(), CLASSES, pd.DataFrame(some)).success
    assert not validate_manifest(frame, config(max_dropped_fraction=0.4), CLASSES, pd.DataFrame(some)).success
    assert validate_manifest(frame, config(), CLASSES, pd.DataFrame(columns=["source", "item", "reason"])).success
