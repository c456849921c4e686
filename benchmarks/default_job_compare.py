"""Compare the two runs of benchmarks/default_job_before_after.sh: images, labels, patient groups, splits, metrics.

python benchmarks/default_job_compare.py [/tmp/before-after]
"""

from __future__ import annotations

import glob
import json
import sys
from pathlib import Path

import pandas as pd


def manifest(run: Path) -> pd.DataFrame:
    """The pipeline run's logged data/manifest.csv (the newest, if the state holds several)."""
    found = sorted(
        glob.glob(str(run / ".covid-xray/**/data/manifest.csv"), recursive=True), key=lambda p: Path(p).stat().st_mtime
    )
    return pd.read_csv(found[-1])


def groups(frame: pd.DataFrame) -> set[frozenset]:
    return set(frame.groupby("group_id")["sha256"].apply(frozenset))


def main(work: Path) -> None:
    before, after = manifest(work / "before"), manifest(work / "after")
    for side in ("before", "after"):
        print((work / side / "done.txt").read_text().strip())
    print(f"images kept: {len(before)} before, {len(after)} after")
    only = set(before["sha256"]) ^ set(after["sha256"])
    print("in one run only:")
    print(
        pd.concat(
            [before[before.sha256.isin(only)].assign(run="before"), after[after.sha256.isin(only)].assign(run="after")]
        )[["run", "source", "label", "patient_id", "split"]].to_string()
    )
    common = before.merge(after, on="sha256", suffixes=("_before", "_after"))
    print(f"common images: {len(common)}, same label: {(common.label_before == common.label_after).all()}")
    g_before, g_after = groups(before[~before.sha256.isin(only)]), groups(after[~after.sha256.isin(only)])
    print(
        f"patient groups of the common images: {len(g_before)} before, {len(g_after)} after, "
        f"identical: {len(g_before & g_after)}"
    )
    print(f"same split: {(common.split_before == common.split_after).sum()} of {len(common)}")
    metrics = [json.loads((work / side / "eval/metrics.json").read_text()) for side in ("before", "after")]
    for model in sorted(set(metrics[0].get("models", {})) | set(metrics[1].get("models", {}))):
        for key in ("accuracy", "balanced_accuracy", "roc_auc", "sensitivity", "specificity", "n"):
            print(
                f"{model} {key}: {metrics[0]['models'].get(model, {}).get(key)} -> "
                f"{metrics[1]['models'].get(model, {}).get(key)}"
            )


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/before-after"))
