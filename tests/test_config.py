from pathlib import Path

import pytest
import yaml

from covid_xray.config import ConfigError, load_config, parse_config


def raw() -> dict:
    return yaml.safe_load(Path("configs/tiny.yaml").read_text())


@pytest.mark.parametrize("path", sorted(Path("configs").glob("*.yaml")))
def test_shipped_configs_are_valid(path: Path):
    assert load_config(path).models


def test_unknown_key_is_named():
    config = raw()
    config["data"]["imgae_size"] = 64
    with pytest.raises(ConfigError, match=r"data\.imgae_size: unknown key"):
        parse_config(config, "tiny.yaml")


def test_wrong_type_and_out_of_range_threshold_are_named():
    config = raw()
    config["data"]["image_size"] = "big"
    config["promotion"]["min_accuracy"] = 1.5
    with pytest.raises(ConfigError) as error:
        parse_config(config, "x.yaml")
    assert "data.image_size: Input should be a valid integer" in str(error.value)
    assert "promotion.min_accuracy: Input should be less than or equal to 1" in str(error.value)


def test_class_list_must_be_known_classes_with_covid():
    config = raw()
    config["data"]["classes"] = ["normal", "pneumonia"]
    with pytest.raises(ConfigError, match="must include 'covid'"):
        parse_config(config)
    config["data"]["classes"] = ["covid", "tuberculosis"]
    with pytest.raises(ConfigError, match=r"data\.classes\.1: Input should be 'covid', 'normal' or 'pneumonia'"):
        parse_config(config)


def test_duplicate_model_and_source_names_are_refused():
    config = raw()
    config["models"].append(dict(config["models"][0]))
    with pytest.raises(ConfigError, match="model names must be unique"):
        parse_config(config)
    config = raw()
    config["data"]["sources"].append({"reader": "ieee8023", "path": "other"})
    with pytest.raises(ConfigError, match="source names must be unique"):
        parse_config(config)


def test_missing_file_and_bad_yaml(tmp_path: Path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("data: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")


def test_loso_threshold_needs_loso_enabled():
    config = raw()
    config["promotion"]["min_loso_balanced_accuracy"] = 0.7
    with pytest.raises(ConfigError, match="needs evaluation.loso: true"):
        parse_config(config)
    config["evaluation"] = {"loso": True}
    assert parse_config(config).evaluation.loso


def with_source(source: dict, classes: list[str] | None = None) -> dict:
    config = raw()
    config["data"]["sources"] = [source]
    config["data"]["classes"] = classes or ["covid", "normal"]
    return config


def test_own_data_reader_options_are_parsed_and_reach_the_reader():
    config = parse_config(with_source({"reader": "folder", "path": "export", "patient_pattern": r"^(P\d+)_",
                                       "labels": {"COVID": "covid", "Healthy": "normal", "Other": None}}))  # fmt: skip
    source = config.data.sources[0]
    assert source.reader_options() == {"labels": {"COVID": "covid", "Healthy": "normal", "Other": None},
                                       "patient_pattern": r"^(P\d+)_"}  # fmt: skip
    assert source.provided_classes() == {"covid", "normal"}
    table = parse_config(with_source({"reader": "csv", "path": "hospital", "csv_file": "export/list.csv"}))
    csv = table.data.sources[0]
    assert csv.reader_options() == {"csv_file": "export/list.csv"}
    assert csv.provided_classes() == {"covid", "normal", "pneumonia"}


@pytest.mark.parametrize("source, message", [
    ({"reader": "ieee8023", "path": "x", "patient_pattern": "(.*)"},
     "data.sources.0: Value error, reader 'ieee8023' takes no option 'patient_pattern' (options it takes: none)"),
    ({"reader": "folder", "path": "x", "csv_file": "a.csv"},
     "reader 'folder' takes no option 'csv_file' (options it takes: labels, patient_pattern)"),
    ({"reader": "folder", "path": "x", "patient_pattern": "P(\\d+"},
     "data.sources.0.patient_pattern: Value error, not a regular expression (missing ), unterminated subpattern"),
    ({"reader": "folder", "path": "x", "patient_pattern": "P\\d+"},
     "data.sources.0.patient_pattern: Value error, needs a group around the patient id"),
    ({"reader": "folder", "path": "x", "labels": {"Healthy": "healthy"}},
     "data.sources.0.labels.Healthy: Input should be 'covid', 'normal' or 'pneumonia'"),
    ({"reader": "csv", "path": "x", "labels": {"Positive": "covid", "POSITIVE ": "covid"}},
     "data.sources.0.labels: Value error, label(s) ['positive'] given more than once"),
    ({"reader": "csv", "path": "x", "labels": {}}, "data.sources.0.labels: Value error, empty mapping"),
    ({"reader": "csv", "path": "x", "delimiter": ";"}, "data.sources.0.delimiter: unknown key"),
])  # fmt: skip
def test_bad_reader_options_are_named(source: dict, message: str):
    with pytest.raises(ConfigError) as error:
        parse_config(with_source(source))
    assert message in str(error.value)


def test_classes_a_source_provides_follow_its_label_mapping():
    only_covid = {"reader": "folder", "path": "x", "labels": {"COVID": "covid", "Other": None}}
    with pytest.raises(ConfigError, match=r"no configured source provides class\(es\) \['normal'\]"):
        parse_config(with_source(only_covid))
    with pytest.raises(ConfigError, match=r"no configured source provides class\(es\) \['normal'\]"):
        parse_config(with_source({"reader": "hannover", "path": "hannover"}))


def test_a_covid_only_source_is_allowed_beside_sources_with_negatives():
    config = raw()
    config["data"]["sources"] = [{"reader": "ieee8023", "path": "ieee8023"}, {"reader": "hannover", "path": "hannover"}]
    assert [s.provided_classes() for s in parse_config(config).data.sources] == [{"covid", "normal", "pneumonia"},
                                                                                  {"covid"}]  # fmt: skip


def test_selection_by_loso_needs_loso_and_loso_models_must_exist():
    config = raw()
    config["promotion"]["selection"] = "loso"
    with pytest.raises(ConfigError, match="promotion.selection: loso needs evaluation.loso: true"):
        parse_config(config)
    config["evaluation"] = {"loso": True, "loso_models": ["cnn-tiny", "resnet"]}
    with pytest.raises(ConfigError, match=r"evaluation.loso_models: no model named \['resnet'\]"):
        parse_config(config)
    config["evaluation"]["loso_models"] = ["cnn-tiny"]
    assert parse_config(config).promotion.selection == "loso"


def test_old_gate_keys_are_errors_not_silently_ignored():
    config = raw()
    config["promotion"]["max_accuracy_drop"] = 0.0
    with pytest.raises(ConfigError, match="promotion.max_accuracy_drop: unknown key"):
        parse_config(config)
