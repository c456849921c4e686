"""Materialize the data with DVC, from the public sources or the team store, and link `data/raw` to it.

- `public`: `dvc update` of every `data/public/<source>/<path>.dvc`, each a `dvc import` of one path of the source's
  Git repository at its pinned commit (data/sources.yaml lists them). DVC clones each repository into its own
  temporary cache and copies only the imported paths; the first fetch records their content hashes in the `.dvc`
  files, which `git diff data/public` then shows.
- `store`: `dvc update data.dvc`, the team's data store beside the project (`../shared/datasets`), copies of the same
  commits downscaled to 512 px.

Either way `data/raw`, the configs' data root, becomes a link to what was fetched (`data/public` or `data/store`), so
`covid-xray run` and `dvc repro` read it and dvc.lock records which data a result came from.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from dvc.exceptions import DvcException
from dvc.repo import Repo

from ..data.provenance import PUBLIC, REGISTRY, STORE, STORE_DVC, dvc_imports, load_registry, registry_mismatches

Origin = Literal["public", "store"]
LINK = Path("data/raw")


class FetchError(Exception):
    """Fetching cannot start (`code` 2: the checkout's state) or a source cannot be imported (`code` 1); the message
    names the file or source and the fix."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Fetched:
    target: str  # the .dvc file
    commit: str  # the upstream commit (public) or the store's md5 (store)
    files: int
    bytes: int
    seconds: float


def _size(path: Path) -> tuple[int, int]:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def _check_link(project: Path) -> None:
    link = project / LINK
    if link.exists() and not link.is_symlink():
        raise FetchError(
            f"{LINK} is a folder, not a link to {STORE} or {PUBLIC}: it is an earlier checkout's copy of the store or "
            f"your own data. Move it away (to keep it, point data.root in your config at its new place), then fetch."
        )


def _store_present(project: Path) -> None:
    stage = yaml.safe_load((project / STORE_DVC).read_text(encoding="utf-8")) or {}
    store = (project / str((stage.get("deps") or [{}])[0].get("path", ""))).resolve()
    if not store.is_dir():
        raise FetchError(
            f"the team data store that {STORE_DVC} imports ({store}) is not here; outside the team, fetch the public "
            "sources instead: covid-xray data fetch --from public"
        )


def _targets(origin: Origin, project: Path) -> list[Path]:
    if origin == "store":
        _store_present(project)
        return [STORE_DVC]
    targets = [item.file for item in dvc_imports(project / PUBLIC)]
    if not targets:
        raise FetchError(f"no .dvc imports under {project / PUBLIC}: the checkout is incomplete")
    return [target.relative_to(project) for target in targets]


def relink(origin: Origin, project: Path = Path(".")) -> Path:
    """Point `data/raw` at `data/<origin>` (a relative link, so the project can move)."""
    _check_link(project)
    link = project / LINK
    if link.is_symlink():
        link.unlink()
    link.symlink_to(origin)
    return link


def fetch(origin: Origin, project: Path = Path("."), echo=print) -> list[Fetched]:
    """Materialize `origin` with DVC, one `.dvc` file at a time (each named in its error), then link data/raw."""
    _check_link(project)
    targets = _targets(origin, project)
    fetched = []
    with Repo(str(project)) as repo:
        for target in targets:
            started = time.perf_counter()
            try:
                repo.update(targets=[str(target)])
            except DvcException as error:
                cause = f"{error}: {error.__cause__}" if error.__cause__ else str(error)
                hint = "is its repository reachable from here?"
                raise FetchError(f"{target}: DVC could not import it ({hint}): {cause}", code=1) from None
            stage = yaml.safe_load((project / target).read_text(encoding="utf-8"))
            output = (project / target).parent / stage["outs"][0]["path"]
            repo_dep = stage["deps"][0].get("repo") or {}
            commit = repo_dep.get("rev_lock") or repo_dep.get("rev") or str(stage["outs"][0].get("md5", ""))
            files, size = _size(output)
            fetched.append(Fetched(str(target), commit, files, size, time.perf_counter() - started))
            echo(f"{target}: {files} files, {size / 1e6:.1f} MB at {commit[:12]} ({fetched[-1].seconds:.1f} s)")
    if origin == "public" and (project / REGISTRY).is_file():
        for problem in registry_mismatches(load_registry(project / REGISTRY), dvc_imports(project / PUBLIC)):
            echo(f"note: {problem} (data/sources.yaml and data/SOURCES.md describe the pinned commits)")
    relink(origin, project)
    echo(f"{LINK} -> {project / 'data' / origin}")
    return fetched
