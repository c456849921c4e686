"""Great Expectations 1.x checks of the split manifest.

The manifest itself is checked row by row (labels, ids, unique content, views, sizes). Checks over
groups — images per class and split, a source's share of a class, patients in one split only — run
on small summary tables derived from it, so every check is a GX expectation with a GX result.
"""

from __future__ import annotations

import html
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
# GX logs hundreds of INFO lines about its own registries on import; a user's run log shows GX warnings only.
logging.getLogger("great_expectations").setLevel(logging.WARNING)

import great_expectations as gx  # noqa: E402
import pandas as pd  # noqa: E402

from ..config import ValidationConfig  # noqa: E402

E = gx.expectations


@dataclass
class CheckResult:
    table: str
    expectation: str
    column: str
    success: bool
    unexpected_count: int
    examples: list

    @property
    def line(self) -> str:
        state = "ok" if self.success else "FAILED"
        detail = "" if self.success else f": {self.unexpected_count} unexpected, e.g. {self.examples[:3]}"
        return f"[{state}] {self.table}: {self.expectation}({self.column}){detail}"


@dataclass
class ValidationReport:
    checks: list[CheckResult]
    severity: str

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.success]

    @property
    def success(self) -> bool:
        return not self.failures

    def summary(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {
                    "table": c.table,
                    "expectation": c.expectation,
                    "column": c.column,
                    "success": c.success,
                    "unexpected": c.unexpected_count,
                }
                for c in self.checks
            ]
        )

    def message(self) -> str:
        return "data validation failed:\n" + "\n".join(c.line for c in self.failures)

    def to_html(self) -> str:
        rows = "".join(
            f"<tr class={'ok' if c.success else 'fail'}><td>{html.escape(c.table)}</td><td>{c.expectation}</td>"
            f"<td>{html.escape(c.column)}</td><td>{'passed' if c.success else 'FAILED'}</td>"
            f"<td>{c.unexpected_count}</td><td>{html.escape(json.dumps(c.examples[:5], default=str))}</td></tr>"
            for c in self.checks
        )
        return (
            "<html><head><meta charset='utf-8'><title>Data validation</title><style>"
            "body{font-family:sans-serif}td,th{padding:4px 8px;border-bottom:1px solid #ddd}"
            ".fail{background:#fdd}.ok{background:#efe}</style></head><body>"
            f"<h1>Data validation: {'passed' if self.success else 'FAILED'} (severity {self.severity})</h1>"
            "<table><tr><th>table</th><th>expectation</th><th>column</th><th>result</th><th>unexpected</th>"
            f"<th>examples</th></tr>{rows}</table></body></html>"
        )


def source_drops(manifest: pd.DataFrame, drops: pd.DataFrame) -> pd.DataFrame:
    """Per source: images kept, items dropped (any reason, duplicates included) and the dropped share of both."""
    kept = manifest.groupby("source").size()
    dropped = drops.groupby("source").size() if len(drops) else pd.Series(dtype=int)
    table = pd.DataFrame({"kept": kept, "dropped": dropped}).fillna(0).astype(int)
    table["dropped_fraction"] = table["dropped"] / (table["kept"] + table["dropped"])
    return table.rename_axis("source").reset_index()


def summary_tables(manifest: pd.DataFrame, classes: Sequence[str]) -> dict[str, pd.DataFrame]:
    """Derived tables for group-level checks: class × split counts, source shares, splits per group."""
    splits = sorted(manifest["split"].unique()) if "split" in manifest else ["all"]
    frame = manifest if "split" in manifest else manifest.assign(split="all")
    counts = (
        frame.groupby(["label", "split"])
        .size()
        .reindex(pd.MultiIndex.from_product([classes, splits], names=["label", "split"]), fill_value=0)
        .rename("count")
        .reset_index()
    )
    per_class = frame.groupby("label").size().reindex(classes, fill_value=0).rename("count").reset_index()
    shares = frame.groupby(["label", "source"]).size().rename("count").reset_index()
    shares["share"] = shares["count"] / shares.groupby("label")["count"].transform("sum")
    groups = frame.groupby("group_id")["split"].nunique().rename("splits").reset_index()
    return {"class_counts": per_class, "class_split_counts": counts, "source_shares": shares, "group_splits": groups}


def expectations(config: ValidationConfig, classes: Sequence[str]) -> dict[str, list]:
    return {
        "manifest": [
            E.ExpectColumnValuesToBeInSet(column="label", value_set=list(classes)),
            E.ExpectColumnValuesToNotBeNull(column="patient_id"),
            E.ExpectColumnValuesToNotBeNull(column="path"),
            E.ExpectColumnValuesToBeUnique(column="sha256"),
            E.ExpectColumnValuesToBeInSet(column="view", value_set=config.allowed_views),
            E.ExpectColumnValuesToBeInSet(column="modality", value_set=config.allowed_modalities),
            E.ExpectColumnValuesToBeBetween(column="width", min_value=config.min_side, max_value=config.max_side),
            E.ExpectColumnValuesToBeBetween(column="height", min_value=config.min_side, max_value=config.max_side),
        ],
        "class_counts": [E.ExpectColumnValuesToBeBetween(column="count", min_value=config.min_images_per_class)],
        "class_split_counts": [
            E.ExpectColumnValuesToBeBetween(column="count", min_value=config.min_images_per_split_class)
        ],
        "source_shares": [E.ExpectColumnValuesToBeBetween(column="share", max_value=config.max_source_share_in_class)],
        "group_splits": [E.ExpectColumnValuesToBeBetween(column="splits", min_value=1, max_value=1)],
        "source_drops": [
            E.ExpectColumnValuesToBeBetween(column="dropped_fraction", max_value=config.max_dropped_fraction)
        ],
    }


def validate_manifest(
    manifest: pd.DataFrame, config: ValidationConfig, classes: Sequence[str], drops: pd.DataFrame | None = None
) -> ValidationReport:
    """Run every expectation with Great Expectations and collect the results; with `drops` (ingest's drop table),
    also the share of each source's items that were dropped."""
    context = gx.get_context(mode="ephemeral")
    source = context.data_sources.add_pandas("covid_xray")
    tables = {"manifest": manifest, **summary_tables(manifest, classes)}
    if drops is not None:
        tables["source_drops"] = source_drops(manifest, drops)
    checks = []
    for name, suite_expectations in expectations(config, classes).items():
        if name not in tables:
            continue
        batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
        suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=suite_expectations))
        result = batch.get_batch(batch_parameters={"dataframe": tables[name]}).validate(suite)
        for item in result.results:
            config_ = item.expectation_config
            assert config_ is not None  # noqa: S101 - GX fills it for every result of a suite
            details = item.result or {}
            examples = details.get("partial_unexpected_list") or []
            if name != "manifest" and not item.success:
                examples = _failing_rows(tables[name], config_.kwargs)
            checks.append(
                CheckResult(
                    name,
                    config_.type,
                    config_.kwargs.get("column", ""),
                    bool(item.success),
                    int(details.get("unexpected_count") or 0),
                    examples,
                )
            )
    return ValidationReport(checks, config.severity)


def _failing_rows(table: pd.DataFrame, kwargs: dict) -> list[dict]:
    column = table[kwargs["column"]]
    bad = pd.Series(False, index=table.index)
    if kwargs.get("min_value") is not None:
        bad |= column < kwargs["min_value"]
    if kwargs.get("max_value") is not None:
        bad |= column > kwargs["max_value"]
    return table[bad].head(5).to_dict("records")
