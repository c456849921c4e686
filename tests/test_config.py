import re
from pathlib import Path
from typing import get_args

import annotated_types
import pytest
import yaml

from covid_xray.config import ConfigError, DataConfig, RunConfig, SourceConfig, load_config, nested_model, parse_config


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
    config = parse_config(
        with_source(
            {
                "reader": "folder",
                "path": "export",
                "patient_pattern": r"^(P\d+)_",
                "labels": {"COVID": "covid", "Healthy": "normal", "Other": None},
            }
        )
    )
    source = config.data.sources[0]
    assert source.reader_options() == {
        "labels": {"COVID": "covid", "Healthy": "normal", "Other": None},
        "patient_pattern": r"^(P\d+)_",
    }
    assert source.provided_classes() == {"covid", "normal"}
    table = parse_config(with_source({"reader": "csv", "path": "hospital", "csv_file": "export/list.csv"}))
    csv = table.data.sources[0]
    assert csv.reader_options() == {"csv_file": "export/list.csv"}
    assert csv.provided_classes() == {"covid", "normal", "pneumonia"}


@pytest.mark.parametrize(
    "source, message",
    [
        (
            {"reader": "ieee8023", "path": "x", "patient_pattern": "(.*)"},
            "data.sources.0: Value error, reader 'ieee8023' takes no option 'patient_pattern' (options it takes: none)",
        ),
        (
            {"reader": "folder", "path": "x", "csv_file": "a.csv"},
            "reader 'folder' takes no option 'csv_file' (options it takes: labels, patient_pattern)",
        ),
        (
            {"reader": "folder", "path": "x", "patient_pattern": "P(\\d+"},
            "data.sources.0.patient_pattern: Value error, not a regular expression (missing ), unterminated subpattern",
        ),
        (
            {"reader": "folder", "path": "x", "patient_pattern": "P\\d+"},
            "data.sources.0.patient_pattern: Value error, needs a group around the patient id",
        ),
        (
            {"reader": "folder", "path": "x", "labels": {"Healthy": "healthy"}},
            "data.sources.0.labels.Healthy: Input should be 'covid', 'normal' or 'pneumonia'",
        ),
        (
            {"reader": "csv", "path": "x", "labels": {"Positive": "covid", "POSITIVE ": "covid"}},
            "data.sources.0.labels: Value error, label(s) ['positive'] given more than once",
        ),
        ({"reader": "csv", "path": "x", "labels": {}}, "data.sources.0.labels: Value error, empty mapping"),
        ({"reader": "csv", "path": "x", "delimiter": ";"}, "data.sources.0.delimiter: unknown key"),
    ],
)
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
    assert [s.provided_classes() for s in parse_config(config).data.sources] == [
        {"covid", "normal", "pneumonia"},
        {"covid"},
    ]


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


@pytest.mark.parametrize(
    "section, key, value",
    [
        ("models.0", "learning_rate", float("inf")),
        ("models.0", "learning_rate", float("nan")),
        ("promotion", "lease_seconds", float("inf")),
        ("data", "near_duplicate_min_correlation", float("nan")),
    ],
)
def test_non_finite_numbers_are_refused_naming_the_key(section, key, value):
    config = raw()
    parent = config["models"][0] if section == "models.0" else config.setdefault(section, {})
    parent[key] = value
    with pytest.raises(ConfigError, match=rf"^x\.yaml: {section}\.{key}: Input should be a finite number$"):
        parse_config(config, "x.yaml")


@pytest.mark.parametrize(
    "model, key, value, message",
    [
        (1, "conv_filters", [16, 0], "models.1.conv_filters.1: Input should be greater than or equal to 1"),
        (1, "conv_filters", [16, 10**6], "models.1.conv_filters.1: Input should be less than or equal to 4096"),
        (1, "conv_filters", [], "models.1.conv_filters: List should have at least 1 item"),
        (0, "head", {"dense_units": [-8]}, "models.0.head.dense_units.0: Input should be greater than or equal to 1"),
    ],
)
def test_layer_sizes_must_be_positive(model, key, value, message):
    config = raw()
    config["models"][model][key] = value
    with pytest.raises(ConfigError) as error:
        parse_config(config, "x.yaml")
    assert message in str(error.value)
    config["models"][0]["head"] = {"dense_units": []}  # a linear head stays allowed
    config["models"][1]["conv_filters"] = [4]
    assert parse_config(config).models[0].head.dense_units == []


ALIAS_BOMB = """
execution:
  train:
    orchestrator:
      a: &a [x, x, x, x, x, x, x, x, x]
      b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
      c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
      d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
      e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
      f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
      g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
      h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
      i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def test_a_nested_alias_bomb_is_refused_at_load_time_without_expanding(tmp_path: Path):
    import time

    path = tmp_path / "bomb.yaml"
    path.write_text(Path("configs/tiny.yaml").read_text() + ALIAS_BOMB)
    assert path.stat().st_size < 2000  # a few hundred bytes that would expand to 9**9 strings
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=r"bomb\.yaml: more than 20000 values once YAML aliases are expanded"):
        load_config(path)
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize(
    "block, message",
    [
        ({"pod": [[["x"] * 50] * 50]}, "more than 2000 values once YAML aliases are expanded"),
        ({"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}}, "nested deeper than 8 levels"),
    ],
)
def test_free_form_settings_blocks_are_bounded(block, message):
    for where in ("train", "docker"):
        config = raw()
        config["execution"] = {"train": {"orchestrator": block}} if where == "train" else {"docker": block}
        key = "execution.train.orchestrator" if where == "train" else "execution.docker"
        with pytest.raises(ConfigError, match=rf"x\.yaml: {key}: Value error, {message}"):
            parse_config(config, "x.yaml")
    config = raw()
    config["execution"] = {"train": {"orchestrator": {"pod_settings": {"node_selectors": {"gpu": "a100"}}}}}
    assert parse_config(config).execution.train.orchestrator["pod_settings"]["node_selectors"] == {"gpu": "a100"}


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a text file (binary content: NUL bytes); a config is UTF-8 YAML"),
        (b"data:\n  root: caf\xe9\n", "not UTF-8 text (byte 0xe9 on line 2); save the config as UTF-8"),
        (b"- just\n- a list\n", "expected a mapping at the top level"),
    ],
)
def test_a_config_that_is_not_utf8_yaml_text_is_named(tmp_path: Path, content: bytes, message: str):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value) == f"{path}: {message}"
    with pytest.raises(ConfigError, match="is a folder, not a config file"):
        load_config(tmp_path)


# Minimum counts: a huge one refuses the data at validation, in seconds, with the count named; it never runs long.
MINIMUMS_WITHOUT_UPPER_BOUND = {
    "split.min_train_images_per_class",
    "validation.min_images_per_class",
    "validation.min_images_per_split_class",
    "validation.min_side",
    "evaluation.loso_min_images",
    "promotion.min_compared_images",
    "promotion.min_compared_patients",
}


def numeric_settings(model=RunConfig, prefix=""):
    """(dotted key, has an upper bound) for every int or float setting of the config, nested ones included."""
    for name, info in model.model_fields.items():
        inner = nested_model(info.annotation)
        if inner is not None:
            yield from numeric_settings(inner, f"{prefix}{name}.")
        elif {int, float} & {info.annotation, *get_args(info.annotation)}:
            yield f"{prefix}{name}", any(isinstance(m, (annotated_types.Le, annotated_types.Lt)) for m in info.metadata)


def test_every_number_a_user_sets_has_an_upper_bound_or_is_a_minimum_count():
    unbounded = {key for key, bounded in numeric_settings() if not bounded}
    assert unbounded == MINIMUMS_WITHOUT_UPPER_BOUND


@pytest.mark.parametrize(
    "section, index, key, value, reason",
    [
        ("models", 1, "epochs", 10**12, "a longer run is a typo"),
        ("models", 0, "fine_tune_epochs", 10**6, "a longer run is a typo"),
        ("models", 1, "learning_rate", 1e6, "diverges"),
        ("models", 1, "batch_size", 10**9, "no GPU holds"),
        ("data", None, "max_pixels", 10**15, "gigabytes"),
        ("split", None, "seed", 2**40, "32-bit"),
        ("promotion", None, "bootstrap_resamples", 10**9, "no longer moves"),
    ],
)
def test_an_absurd_setting_is_refused_naming_the_key_the_bound_and_why(section, index, key, value, reason):
    config = raw()
    (config[section][index] if index is not None else config[section])[key] = value
    where = f"{section}.{index}.{key}" if index is not None else f"{section}.{key}"
    with pytest.raises(
        ConfigError, match=rf"{re.escape(where)}: Input should be less than or equal to [\d.e+]+ \(.*{reason}"
    ):
        parse_config(config, "x.yaml")


def test_findings_default_to_what_the_sources_label_and_an_unmapped_export_counts_as_covid_and_normal():
    def data(*sources: dict) -> DataConfig:
        return DataConfig(sources=[SourceConfig(**source) for source in sources])

    export = {"reader": "folder", "path": "export", "name": "hospital"}
    assert data(export).findings == ["covid", "normal"]  # a user's covid/normal export needs no `classes`
    both = data({"reader": "ieee8023", "path": "ieee8023"}, export)
    assert both.findings == ["covid", "normal", "pneumonia"]
    assert both.sources[1].expected_classes() == {"covid", "normal"}  # the pre-flight does not ask it for pneumonia
    mapped = data(export | {"labels": {"COVID": "covid", "Viral": "pneumonia"}})
    assert mapped.findings == ["covid", "pneumonia"]
