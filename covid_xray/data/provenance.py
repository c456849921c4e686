"""Where each source's data comes from, at which commit, under which licence.

`data/sources.yaml` lists the public sources: repository, pinned commit, the paths the reader takes, licence terms and
known messes. Two origins hold them (`covid-xray data fetch` materializes one and links `data/raw` to it):

- `data/public/<source>/<path>`: one DVC import per path, from the source's Git repository at its commit;
- `data/store`: the team's data store (`data.dvc`), copies of the same commits downscaled to 512 px.

A run records, per configured source, the repository, the commit its data came from and the licence
(`source_records`); the model card prints them. `sources_markdown` writes `data/SOURCES.md` from the registry.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from ..config import DataConfig

REGISTRY = Path("data/sources.yaml")
PUBLIC = Path("data/public")
STORE = Path("data/store")
STORE_DVC = Path("data.dvc")
Origin = Literal["public", "store", "folder"]


class PublicSource(BaseModel):
    """One public source as `data/sources.yaml` describes it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="The source's name in configs and reports (its folder under data/raw).")
    reader: str
    title: str
    repository: str = Field(pattern=r"^https://github\.com/[\w.-]+/[\w.-]+$")
    commit: str = Field(pattern=r"^[0-9a-f]{40}$")
    paths: list[str] = Field(min_length=1, description="What the DVC imports take from the repository.")
    licence: str = Field(description="The licence terms in one line, as the model card shows them.")
    non_commercial: Literal["no", "some images", "all", "not stated"]
    attribution: str
    reader_takes: str
    messes: list[str]


class Registry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sources: list[PublicSource] = Field(min_length=1)

    def by_name(self) -> dict[str, PublicSource]:
        return {source.name: source for source in self.sources}


class DvcImport(BaseModel):
    """One `.dvc` import of a path of a Git repository, as DVC recorded it."""

    model_config = ConfigDict(frozen=True)

    file: Path
    source: str
    path: str
    url: str
    rev: str
    rev_lock: str | None
    md5: str | None

    @property
    def commit(self) -> str:
        """The commit the materialized files came from (DVC's lock), else the pinned revision."""
        return self.rev_lock or self.rev


def load_registry(path: Path = REGISTRY) -> Registry:
    try:
        return Registry.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no source registry here (run from the project's root)") from None


def dvc_imports(public: Path = PUBLIC) -> list[DvcImport]:
    """The Git imports under `public`, one per `<source>/<path>.dvc`, in name order."""
    found = []
    for file in sorted(public.glob("*/*.dvc")):
        stage = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        deps, outs = stage.get("deps") or [{}], stage.get("outs") or [{}]
        repo = deps[0].get("repo")
        if not repo:
            raise ValueError(f"{file}: not an import from a Git repository (no deps[0].repo)")
        found.append(
            DvcImport(
                file=file,
                source=file.parent.name,
                path=str(deps[0]["path"]),
                url=str(repo["url"]),
                rev=str(repo.get("rev", "")),
                rev_lock=repo.get("rev_lock"),
                md5=outs[0].get("md5"),
            )
        )
    return found


def registry_mismatches(registry: Registry, imports: list[DvcImport]) -> list[str]:
    """How the `.dvc` imports differ from the registry (repository, commit, paths), one line each; empty when they
    agree. An import updated to a new commit shows here until the registry says the same."""
    problems = []
    by_source: dict[str, list[DvcImport]] = {}
    for item in imports:
        by_source.setdefault(item.source, []).append(item)
    for source in registry.sources:
        found = by_source.pop(source.name, [])
        paths = sorted(item.path for item in found)
        if paths != sorted(source.paths):
            problems.append(f"{source.name}: the .dvc files import {paths}, the registry lists {sorted(source.paths)}")
        for item in found:
            if item.url.removesuffix(".git") != source.repository:
                problems.append(f"{item.file}: repository {item.url}, the registry says {source.repository}")
            if item.commit != source.commit:
                problems.append(f"{item.file}: commit {item.commit}, the registry says {source.commit}")
    problems += [f"{name}: .dvc imports of a source the registry does not list" for name in sorted(by_source)]
    return problems


def origin_of(root: Path) -> Origin:
    """Which origin a data root is: the public imports, the team store, or some other folder."""
    resolved = root.resolve()
    if resolved == PUBLIC.resolve():
        return "public"
    if resolved == STORE.resolve():
        return "store"
    return "folder"


def data_version(root: Path) -> str:
    """A short id of the DVC-tracked data under `root`: the store's md5 (data.dvc), a digest of the public imports'
    commits and md5s, or 'untracked' for any other folder."""
    origin = origin_of(root)
    if origin == "store" and STORE_DVC.is_file():
        outs = (yaml.safe_load(STORE_DVC.read_text(encoding="utf-8")) or {}).get("outs") or [{}]
        return str(outs[0].get("md5", "")).removesuffix(".dir")[:12] or "untracked"
    if origin == "public":
        lines = [f"{item.file.as_posix()} {item.commit} {item.md5}" for item in dvc_imports()]
        return "public-" + hashlib.sha256("\n".join(lines).encode()).hexdigest()[:12]
    return "untracked"


def source_records(data: DataConfig, registry: Registry | None) -> list[dict[str, str]]:
    """Per configured source: its repository, the commit its data came from, the origin and the licence terms.
    A source the registry does not list (a user's own export) says so instead of guessing."""
    root = Path(data.root)
    origin = origin_of(root)
    known = registry.by_name() if registry else {}
    commits: dict[str, set[str]] = {}
    urls: dict[str, set[str]] = {}
    if origin == "public":
        for item in dvc_imports():
            commits.setdefault(item.source, set()).add(item.commit)
            urls.setdefault(item.source, set()).add(item.url)
    records = []
    for source in data.sources:
        entry = known.get(source.label)
        if entry is None:
            repository, commit, licence = "", "", "not recorded: not a public source of data/sources.yaml"
        else:
            repository = ", ".join(sorted(urls.get(source.label, {entry.repository})))
            if origin == "public":
                commit = ", ".join(sorted(commits.get(source.label, {"not imported"})))
            elif origin == "store":
                commit = entry.commit
            else:
                commit = f"unknown (a folder, not data/public or data/store; {entry.commit} is the pinned commit)"
            licence = entry.licence
        records.append(
            {
                "source": source.label,
                "reader": source.reader,
                "origin": origin,
                "path": str(root / source.path),
                "repository": repository,
                "commit": commit,
                "licence": licence,
                "non_commercial": entry.non_commercial if entry else "not stated",
                "attribution": entry.attribution if entry else "",
            }
        )
    return records


ORIGIN_TEXT = {
    "public": "DVC imports of the files at the commit, unchanged",
    "store": "the team data store: copies of the commit's files, downscaled to 512 px, some images set aside",
    "folder": "a folder that is neither data/public nor data/store",
}


def non_commercial_paragraph(terms: dict[str, str]) -> str:
    """The sources (name -> non-commercial terms) whose terms restrict use, said plainly: SOURCES.md and the model
    card both print it."""
    restricted = [f"{name} ({value})" for name, value in terms.items() if value != "no"]
    if not restricted:
        return "Every source allows commercial use under its licence; attribution is still required."
    return (
        f"**Non-commercial or unstated terms apply** to {', '.join(restricted)}: a model trained on them inherits "
        "the most restrictive terms of its data. Treat it as research use only, and check each licence before any "
        "other use."
    )


def sources_markdown(registry: Registry) -> str:
    """`data/SOURCES.md`: per source, repository, commit, licence terms, what the reader takes, known messes."""
    lines = [
        "# Data sources",
        "",
        "Generated from `data/sources.yaml` by `python docs/make_sources.py`; do not edit by hand.",
        "",
        "Each public source is a Git repository pinned at one commit. `covid-xray data fetch --from public` imports",
        "the paths below with DVC (`data/public/<source>/<path>.dvc`); `--from store` takes the team store's copies",
        "of the same commits (`data.dvc`), downscaled to 512 px with some images set aside. A trained model's card",
        "lists the sources, commits and licences of its data.",
        "",
        non_commercial_paragraph({s.name: s.non_commercial for s in registry.sources}),
        "",
        "| source | repository | commit | licence | non-commercial terms |",
        "|---|---|---|---|---|",
    ]
    for source in registry.sources:
        lines.append(
            f"| `{source.name}` | [{source.repository.removeprefix('https://github.com/')}]({source.repository}) "
            f"| `{source.commit[:12]}` | {source.licence} | {source.non_commercial} |"
        )
    for source in registry.sources:
        lines += [
            "",
            f"## {source.name}: {source.title}",
            "",
            f"- Repository: {source.repository}, commit `{source.commit}`.",
            f"- Imported paths: {', '.join(f'`{path}`' for path in source.paths)} "
            f"(`data/public/{source.name}/`; reader `{source.reader}`).",
            f"- Licence: {source.licence}. Non-commercial terms: {source.non_commercial}.",
            f"- Attribution: {source.attribution}",
            f"- What the reader takes: {source.reader_takes}",
            "- Known messes:",
            *[f"  - {mess}" for mess in source.messes],
        ]
    return "\n".join(lines) + "\n"
