"""Side by side: the data of the newest pipeline run in two covid-xray state folders (COVID_XRAY_HOME): kept images
(every manifest column), split sizes, images by source and label, and the drop tables.

    python benchmarks/compare_states.py BEFORE_HOME AFTER_HOME
"""

from __future__ import annotations

import glob
import sys
from pathlib import Path

import pandas as pd


def logged(home: str, name: str) -> pd.DataFrame:
    """The newest `data/<name>` a pipeline run logged in the state folder `home`."""
    found = sorted(glob.glob(f"{home}/**/data/{name}", recursive=True), key=lambda p: Path(p).stat().st_mtime)
    if not found:
        raise SystemExit(f"{home}: no pipeline run logged data/{name}")
    return pd.read_csv(found[-1])


def main(before_home: str, after_home: str) -> None:
    before, after = logged(before_home, "manifest.csv"), logged(after_home, "manifest.csv")
    by_key = lambda frame: frame.sort_values("sha256").reset_index(drop=True)  # noqa: E731
    same = by_key(before).equals(by_key(after))
    print(f"kept images: {len(before)} before, {len(after)} after; identical manifest: {same}")
    splits = [frame.groupby("split").size().to_dict() for frame in (before, after)]
    print(f"split sizes: {splits[0]} before, {splits[1]} after")
    cells = [frame.groupby(["source", "label"]).size() for frame in (before, after)]
    print(pd.concat(cells, axis=1, keys=["before", "after"]).to_string())
    drops_before, drops_after = logged(before_home, "drops.csv"), logged(after_home, "drops.csv")
    print(f"drops: {len(drops_before)} before, {len(drops_after)} after; identical: {drops_before.equals(drops_after)}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
