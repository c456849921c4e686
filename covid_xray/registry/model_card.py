"""A short, plain-language model card for a registered model version, built only from its own MLflow records.

Everything in the card is read back from the version's run (params, metrics, tags, artifacts) and its pipeline
(parent) run: the data composition from `data/manifest.csv`, the sources' commits and licences from
`data/sources.json`, leave-one-source-out results from `loso/`. What a run did not record is said to be missing,
never filled in.
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from ..data.provenance import ORIGIN_TEXT, non_commercial_paragraph
from ..evaluation.subgroups import MIN_PATIENTS, subgroup_table
from ..labels import POSITIVE

CARD_ARTIFACT = "model_card.md"
SOURCES_ARTIFACT = "data/sources.json"  # logged by the ingest step (covid_xray.data.provenance.source_records)
TEST_METRICS = ["accuracy", "balanced_accuracy", "sensitivity", "specificity", "ppv", "npv", "roc_auc"]
INTENDED_USE = (
    "Research, teaching and MLOps practice: studying how a chest X-ray classifier of COVID-19 against other findings "
    "behaves on "
    "public datasets, and how its numbers change with the data, the split and the operating point."
)
NOT_INTENDED = [
    "Diagnosing, screening or triaging patients, or any decision about a person's care. The model has not been "
    "validated prospectively or by a regulator.",
    "Images unlike the training data: CT scans, lateral views, children, other diseases (it knows only the classes "
    "below), photos or screenshots of X-rays.",
    "Sites or scanners not among the data sources below without checking it there first (see leave-one-source-out).",
]
GENERAL_FAILURE_MODES = [
    "Public COVID-19 X-ray collections come from different hospitals than their normal images, so a model can learn "
    "the hospital (markers, borders, exposure) instead of the disease; the shortcut check above measures this.",
    "A probability near the threshold is a coin toss; calibration on validation does not make it certain.",
    "Images of a disease other than the classes it knows are forced into one of them.",
]


def _artifact_text(client: MlflowClient, run_id: str, path: str) -> str | None:
    """The text of a run's artifact, or None when the run did not log it."""
    folder = path.rsplit("/", 1)[0] if "/" in path else None
    if path not in {a.path for a in client.list_artifacts(run_id, folder)}:
        return None
    with tempfile.TemporaryDirectory() as folder:
        return Path(client.download_artifacts(run_id, path, folder)).read_text(encoding="utf-8")


def _with_interval(metrics: dict, name: str) -> str:
    value = metrics[name]
    low, high = metrics.get(f"{name}_ci_low"), metrics.get(f"{name}_ci_high")
    return f"{value:.3f} (95% CI {low:.3f}–{high:.3f})" if low is not None and high is not None else f"{value:.3f}"


def _table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = [
        "| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row) + " |"
        for row in frame.itertuples(index=False)
    ]
    return "\n".join([header, rule, *rows])


def composition(manifest: pd.DataFrame) -> pd.DataFrame:
    """Images per source and label, with the split counts: the data the model was trained and tested on."""
    counts = manifest.groupby(["source", "label", "split"]).size().unstack("split", fill_value=0)
    for split in ("train", "val", "test"):
        if split not in counts:
            counts[split] = 0
    counts = counts[["train", "val", "test"]]
    counts["total"] = counts.sum(axis=1)
    return counts.reset_index()


def version_run_id(version: ModelVersion) -> str:
    """The run that logged a registered version (its `run_id` tag, set at registration, else MLflow's own field)."""
    run_id = (version.tags or {}).get("run_id") or version.run_id
    if not run_id:
        raise LookupError(f"version {version.version} of {version.name!r} has no run")
    return str(run_id)


def _sources_section(client: MlflowClient, parent_id: str | None) -> list[str]:
    """Each source's repository, commit, origin and licence, from the pipeline run's `data/sources.json`."""
    text = _artifact_text(client, parent_id, SOURCES_ARTIFACT) if parent_id else None
    if text is None:
        return ["The pipeline run recorded no data sources: where the data came from, and its licences, are unknown."]
    records = json.loads(text)
    frame = pd.DataFrame(
        {
            "source": [r["source"] for r in records],
            "repository": [r["repository"].removeprefix("https://github.com/") or "–" for r in records],
            "commit": [r["commit"] or "unknown" for r in records],
            "licence": [r["licence"] for r in records],
            "non-commercial terms": [r["non_commercial"] for r in records],
        }
    )
    origins = sorted({ORIGIN_TEXT.get(r["origin"], r["origin"]) for r in records})
    return [
        f"Fetched from: {'; '.join(origins)}.",
        "",
        _table(frame),
        "",
        non_commercial_paragraph({r["source"]: r["non_commercial"] for r in records}),
    ]


def _recipe(params: dict) -> str:
    """What the variant's training adds to its architecture, from its logged parameters: ', source-adversarial head
    (weight w)', ', ensemble of K seeds'; empty for a plain model."""
    parts = []
    if params.get("model.adversarial.weight") not in (None, "None"):
        parts.append(f"source-adversarial head (weight {params['model.adversarial.weight']})")
    if params.get("model.members", "1") != "1":
        parts.append(f"ensemble of {params['model.members']} seeds")
    return "".join(f", {part}" for part in parts)


def model_card(client: MlflowClient, model_name: str, version: str) -> str:
    """The Markdown card of `model_name` version `version`."""
    found = client.get_model_version(model_name, str(version))
    run_id = version_run_id(found)
    run = client.get_run(run_id)
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    variant = tags.get("model.variant", "?")
    parent_id = tags.get("mlflow.parentRunId")
    parent = client.get_run(parent_id) if parent_id else None
    aliases = f" (@{', @'.join(found.aliases)})" if found.aliases else ""
    lines = [
        f"# Model card: {model_name} version {found.version}{aliases}",
        "",
        f"Variant `{variant}` ({params.get('model.kind', '?')}, {params.get('data.image_size', '?')} px input"
        f"{_recipe(params)}), task `{params.get('task', 'not recorded')}`, "
        f"MLflow run `{run_id}`, data version `{tags.get('data.manifest_hash', 'unknown')}` "
        f"(DVC `{tags.get('data.dvc_md5', 'unknown')}`), code `{tags.get('git.commit', 'unknown')[:12]}`.",
        "",
        "## Intended use",
        "",
        INTENDED_USE,
        "",
        "## Not intended for",
        "",
        *[f"- {item}" for item in NOT_INTENDED],
        "",
        "## Data",
        "",
    ]
    manifest_text = _artifact_text(client, parent_id, "data/manifest.csv") if parent_id else None
    if manifest_text is None:
        lines.append("The pipeline run recorded no data manifest: the composition is unknown.")
    else:
        manifest = pd.read_csv(io.StringIO(manifest_text))
    missing = [] if manifest_text is None else [c for c in ("source", "label", "split") if c not in manifest]
    if missing:
        lines.append(f"The run's data manifest has no {', '.join(missing)} column(s): the composition is unknown.")
    elif manifest_text is not None:
        lines += [
            f"{len(manifest)} images from {manifest['source'].nunique()} source(s), split by patient "
            f"(no patient on both sides of a split). Classes: {', '.join(sorted(manifest['label'].unique()))}.",
            "",
            _table(composition(manifest)),
        ]
    lines += ["", "## Data sources and licences", "", *_sources_section(client, parent_id)]
    lines += ["", "## Operating point", ""]
    if "operating_point.threshold" in params:
        threshold = float(params["operating_point.threshold"])
        rule, calibration = params.get("operating_point.rule", "?"), params.get("operating_point.calibration", "none")
        lines.append(
            f"An image is called covid when its covid probability is at least {threshold:.3f} (rule "
            f"`{rule}`, chosen on the validation split; calibration `{calibration}`)."
        )
    else:
        lines.append("No operating point was recorded for this run: the class is the covid probability >= 0.5.")
    lines += ["", "## Internal test metrics", ""]
    shown = [m for m in TEST_METRICS if f"test_{m}" in metrics]
    if shown:
        size = ""
        if "test_n" in metrics:
            covid = f", {int(metrics['test_n_covid'])} covid" if "test_n_covid" in metrics else ""
            size = f" ({int(metrics['test_n'])} images{covid})"
        lines.append(
            f"On the held-out test split{size}, from the same sources as training, with the 95% intervals "
            "the evaluation recorded:"
        )
        lines += ["", *[f"- {m.replace('_', ' ')}: {_with_interval(metrics, f'test_{m}')}" for m in shown]]
    else:
        lines.append("The run recorded no test metrics.")
    lines += ["", "## Leave-one-source-out", ""]
    loso_mean = parent.data.metrics.get(f"loso_mean_balanced_accuracy.{variant}") if parent else None
    loso_text = _artifact_text(client, parent_id, f"loso/{variant}.csv") if parent_id else None
    if loso_mean is None and loso_text is None:
        lines.append("Not run for this model: how it does on a hospital it has never seen is unknown.")
    else:
        if loso_mean is not None:
            lines.append(
                f"Trained without each source in turn and tested on it: mean balanced accuracy {loso_mean:.3f} "
                "over the sources with both labels. This is the better guess for a new site."
            )
        if loso_text is not None:
            lines += ["", _table(pd.read_csv(io.StringIO(loso_text)))]
    lines += ["", "## Shortcut check", ""]
    if "shortcut.source_accuracy" in metrics:
        majority = metrics.get("shortcut.source_majority_rate", float("nan"))
        confounding = metrics.get("shortcut.cramers_v_train", float("nan"))
        lines.append(
            f"A classifier on the model's features predicts an image's source with accuracy "
            f"{metrics['shortcut.source_accuracy']:.2f} (majority rate {majority:.2f}); source and label "
            f"confounding in training: Cramér's V {confounding:.2f}."
        )
        lines.append("")
        lines.append(
            f"**Warning:** {tags['warning.shortcut']}"
            if "warning.shortcut" in tags
            else "No shortcut warning: the features do not single out the source and the label together."
        )
    elif metrics.get("shortcut.sources") == 1:
        lines.append(
            "The held-out data comes from one source only: whether the model tells sources apart cannot be "
            "measured here."
        )
    else:
        lines.append("Not recorded for this run.")
    lines += ["", "## Where the model looks", ""]
    if "gradcam.border_share" in metrics:
        band, area = metrics.get("gradcam.border_band", float("nan")), metrics["gradcam.border_area_share"]
        lines.append(
            f"{metrics['gradcam.border_share']:.0%} of the Grad-CAM mass for {POSITIVE} lies in the outer {band:.0%} "
            f"band of the image, which is {area:.0%} of its area (mean over "
            f"{metrics.get('gradcam.images', float('nan')):.0f} test images)."
        )
        lines.append("")
        lines.append(
            "**Warning:** more of it on the edges than an even spread would put there: the model may read markers, "
            "text or borders instead of the lungs."
            if "warning.edge_attention" in tags
            else "No edge warning: the heatmaps are no more on the image's edges than an even spread would be."
        )
    elif metrics.get("gradcam.images") == 0:
        lines.append(
            f"Grad-CAM found no positive evidence for {POSITIVE} in any of the measured test images (its maps were "
            "empty): where this model looks cannot be shown this way."
        )
    else:
        lines.append("Not recorded for this run.")
    subgroups = _artifact_text(client, run_id, "evaluation/subgroups.csv")
    lines += ["", "## Results by subgroup (test split)", ""]
    if subgroups is None:
        lines.append("Not recorded for this run.")
    else:
        lines += [
            "View, sex and age band as the sources' metadata or DICOM headers give them ('unknown' where they do "
            f"not), at the operating point, with 95% patient-group intervals; a group of fewer than {MIN_PATIENTS} "
            "patients or of one class has no interval.",
            "",
            subgroup_table(pd.read_csv(io.StringIO(subgroups), keep_default_na=False, na_values=[""])),
        ]
    lines += ["", "## Known failure modes", "", *[f"- {item}" for item in GENERAL_FAILURE_MODES]]
    per_source = _artifact_text(client, run_id, "evaluation/per_source.csv")
    if per_source is not None:
        frame = pd.read_csv(io.StringIO(per_source))
        one_label = [r.source for r in frame.itertuples() if r.n_covid in (0, r.n)]
        if one_label:
            lines.append(
                f"- Test sources with images of one class only ({', '.join(one_label)}): their accuracy says "
                "nothing about telling the classes apart there."
            )
    sites = sorted((key, site) for key, site in (found.tags or {}).items() if key.startswith("site_evaluation."))
    lines += ["", "## Evaluated at sites", ""]
    if sites:
        lines += [
            f"- {site}: MLflow run {key.split('.', 1)[1]} in covid-xray-site-evaluations (report.html)"
            for key, site in sites
        ]
    else:
        lines.append("None yet: `covid-xray evaluate SITE` scores this version on your own labelled images.")
    if "promotion_decision" in (found.tags or {}):
        lines += [
            "",
            "## Promotion",
            "",
            f"{found.tags['promotion_decision']}: {found.tags.get('promotion_reasons', '')}",
        ]
    return "\n".join(lines) + "\n"


def log_model_card(client: MlflowClient, model_name: str, version: str) -> str:
    """Write the card as `model_card.md` on the version's run and make it the version's description; returns it."""
    text = model_card(client, model_name, version)
    run_id = version_run_id(client.get_model_version(model_name, str(version)))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, CARD_ARTIFACT)
        path.write_text(text, encoding="utf-8")
        client.log_artifact(run_id, str(path))
    client.update_model_version(model_name, str(version), description=text[:5000])
    return text
