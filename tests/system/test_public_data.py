"""A new user's path on the public sources, offline: local Git repositories stand in for the five upstream
repositories (their layout, a handful of real images each, plus upstream files the imports must leave out), the
clone's `.dvc` imports are pointed at them (`file://` URL, the mirror's commit), and then:

- `covid-xray data fetch --from public` materializes the layouts the readers accept, and nothing else;
- `covid-xray run` completes on them, and the model card names each source's commit and licence;
- a new upstream commit taken with `dvc update --rev` shows as a diff of the `.dvc` files;
- `covid-xray data fetch --from store` switches back to the team store.

Only the network step (cloning from github.com) is not exercised.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
from fixtures import ROOT

from covid_xray.data.provenance import load_registry
from covid_xray.sources import READERS

pytestmark = pytest.mark.slow
DVC = str(Path(sys.executable).with_name("dvc"))
GIT_USER = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.org",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.org",
}
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("ZENML_", "MLFLOW_"))} | GIT_USER
ENV |= {"DVC_NO_ANALYTICS": "1", "PYTHONUNBUFFERED": "1"}


def run(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env or ENV, capture_output=True, text=True, timeout=900)


def git(*args: str, cwd: Path) -> str:
    result = run("git", *args, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def decoded(raw: bytes) -> tuple[str, str]:
    try:
        return "utf-8", raw.decode("utf-8")
    except UnicodeDecodeError:
        return "cp1252", raw.decode("cp1252")


def copy_csv_rows(source: Path, target: Path, keep) -> list[dict]:
    """`source` with only the rows `keep` accepts, in its own encoding and line endings; the rows kept."""
    raw = source.read_bytes()
    encoding, text = decoded(raw)
    rows = list(csv.reader(io.StringIO(text, newline="")))
    header, kept = rows[0], [row for row in rows[1:] if keep(dict(zip(rows[0], row)))]
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\r\n" if b"\r\n" in raw else "\n").writerows([header, *kept])
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(out.getvalue().encode(encoding))
    return [dict(zip(header, row)) for row in kept]


def rows_of(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(decoded(path.read_bytes())[1], newline="")))


def one_per_patient(rows: list[dict], patient: str, n: int) -> list[dict]:
    """The first row of each of the first `n` patients."""
    chosen, seen = [], set()
    for row in rows:
        if row[patient] not in seen and len(chosen) < n:
            chosen.append(row)
            seen.add(row[patient])
    return chosen


def mirror_metadata_layout(shared: Path, repo: Path, csv_name: str, image: str, findings: dict, extra=()) -> Counter:
    """metadata.csv + images/: `findings[f]` frontal X-rays of distinct patients per finding `f` (plus the rows
    `extra` accepts), with their images; the findings of the frontal X-ray rows the mirror holds."""
    rows = rows_of(shared / csv_name)
    frontal = [
        r
        for r in rows
        if r.get("view", "PA") in ("PA", "AP")
        and r.get("modality", "X-ray") == "X-ray"
        and (shared / "images" / r[image]).is_file()
    ]
    chosen = {
        r[image]
        for f, n in findings.items()
        for r in one_per_patient([r for r in frontal if r["finding"] == f], "patientid", n)
    }
    chosen |= {r[image] for r in rows if extra and extra(r)}
    kept = copy_csv_rows(shared / csv_name, repo / csv_name, lambda r: r[image] in chosen)
    (repo / "images").mkdir()
    for name in chosen:
        if (shared / "images" / name).is_file():
            shutil.copy2(shared / "images" / name, repo / "images" / name)
    (repo / "README.md").write_text("not imported\n")
    return Counter(
        r["finding"] for r in kept if r.get("view", "PA") in ("PA", "AP") and r.get("modality", "X-ray") == "X-ray"
    )


def mirror_folders(shared: Path, repo: Path, base: str, counts: dict[str, int], avoid: set[str]) -> None:
    for folder, n in counts.items():
        files = sorted(p for p in (shared / base / folder).iterdir() if p.name not in avoid)[:n]
        (repo / base / folder).mkdir(parents=True)
        for file in files:
            shutil.copy2(file, repo / base / folder / file.name)


def mirror_hannover(shared: Path, repo: Path, n: int) -> list[str]:
    folder = shared / "hannover"
    chosen = [r["image_id"] for r in one_per_patient(rows_of(folder / "data.csv"), "patient_id", n)]
    copy_csv_rows(folder / "data.csv", repo / "data.csv", lambda r: r["image_id"] in chosen)
    (repo / "png").mkdir()
    for image_id in chosen:
        shutil.copy2(folder / "png" / f"{image_id}.png", repo / "png" / f"{image_id}.png")
    shutil.copy2(folder / "LICENSE", repo / "LICENSE")
    return chosen


def commit_all(repo: Path, message: str) -> str:
    if not (repo / ".git").is_dir():
        git("init", "-q", "-b", "master", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", message, cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo)


@pytest.fixture(scope="module")
def public(tmp_path_factory, shared_datasets: Path):
    """(clone, mirrors, expected reader counts, commits) after `data fetch --from public` in a fresh clone."""
    tmp = tmp_path_factory.mktemp("public")
    mirrors = {name: tmp / "mirrors" / name for name in ("ieee8023", "actualmed", "darkcovidnet", "hannover")}
    mirrors["covid19-image-dataset"] = tmp / "mirrors/covid19-image-dataset"
    for repo in mirrors.values():
        repo.mkdir(parents=True)
    expected = {
        "ieee8023": mirror_metadata_layout(
            shared_datasets / "ieee8023",
            mirrors["ieee8023"],
            "metadata.csv",
            "filename",
            {"COVID-19": 6, "No Finding": 6},
            extra=lambda r: r["modality"] == "CT",  # upstream CT rows: counted drops
        ),
        "actualmed": mirror_metadata_layout(
            shared_datasets / "actualmed",
            mirrors["actualmed"],
            "metadata.csv",
            "imagename",
            {"COVID-19": 5, "No finding": 5},
        ),
    }
    (mirrors["ieee8023"] / "volumes").mkdir()
    (mirrors["ieee8023"] / "volumes/coronacases_001.nii.gz").write_bytes(b"not imported")  # upstream CT volumes
    ieee_names = {p.name for p in (mirrors["ieee8023"] / "images").iterdir()}
    mirror_folders(
        shared_datasets / "darkcovidnet",
        mirrors["darkcovidnet"],
        "X-Ray Image DataSet",
        {"Covid-19": 5, "No_findings": 6, "Pneumonia": 2},
        avoid=ieee_names,  # its Covid-19 images are ieee8023's: keep the copies out of the mirror
    )
    for part, n in (("train", 4), ("test", 2)):
        mirror_folders(
            shared_datasets / "covid19-image-dataset",
            mirrors["covid19-image-dataset"],
            f"Covid19-dataset/{part}",
            {"Covid": n, "Normal": n, "Viral Pneumonia": 1},
            avoid=set(),
        )
    (mirrors["covid19-image-dataset"] / "Covid19-dataset_2/train/Covid").mkdir(parents=True)  # not imported
    (mirrors["covid19-image-dataset"] / "Covid19-dataset_2/train/Covid/01.jpeg").write_bytes(b"not imported")
    hannover_ids = mirror_hannover(shared_datasets, mirrors["hannover"], 5)
    commits = {name: commit_all(repo, "upstream layout") for name, repo in mirrors.items()}

    (tmp / "shared").symlink_to(shared_datasets.parent)  # the team store beside the clone, for the switch back
    git("clone", "-q", str(ROOT), str(tmp / "clone"), cwd=tmp)
    clone = tmp / "clone"
    for file in sorted((clone / "data/public").glob("*/*.dvc")):
        stage = yaml.safe_load(file.read_text())
        stage["deps"][0]["repo"] = {"url": mirrors[file.parent.name].as_uri(), "rev": commits[file.parent.name]}
        file.write_text(yaml.safe_dump(stage, sort_keys=False))
    git("commit", "-q", "-am", "the public imports from local mirrors", cwd=clone)
    env = ENV | {"COVID_XRAY_HOME": str(tmp / "home")}
    fetched = run(sys.executable, "-m", "covid_xray.cli", "data", "fetch", "--from", "public", cwd=clone, env=env)
    assert fetched.returncode == 0, fetched.stderr
    return tmp, clone, env, mirrors, commits, expected, hannover_ids, fetched.stdout


def test_fetch_materializes_each_upstream_layout_at_its_commit_and_nothing_else(public):
    tmp, clone, env, mirrors, commits, expected, hannover_ids, stdout = public
    assert (clone / "data/raw").resolve() == (clone / "data/public").resolve()
    assert stdout.splitlines()[-1] == "data/raw -> data/public"
    assert len([line for line in stdout.splitlines() if " files, " in line]) == 9
    # the mirrors are not the registry's repositories and commits: the fetch says so
    notes = [line for line in stdout.splitlines() if line.startswith("note: ")]
    assert len(notes) == 18 and f"commit {commits['hannover']}, the registry says ad7ab099b425" in "".join(notes)
    raw = clone / "data/raw"
    assert not (raw / "ieee8023/volumes").exists() and not (raw / "ieee8023/README.md").exists()
    assert not (raw / "covid19-image-dataset/Covid19-dataset_2").exists()
    assert (
        (raw / "hannover/LICENSE")
        .read_text()
        .startswith((ROOT.parent / "shared/datasets/hannover/LICENSE").read_text()[:40])
    )
    # the readers accept what DVC materialized
    registry = load_registry(clone / "data/sources.yaml").by_name()
    scans = {name: READERS[registry[name].reader](raw / name, source=name) for name in registry}
    labels = {name: Counter(row["label"] for row in scan.rows) for name, scan in scans.items()}
    assert labels["ieee8023"] == {
        "covid": expected["ieee8023"]["COVID-19"],
        "normal": expected["ieee8023"]["No Finding"],
    }
    assert expected["ieee8023"]["COVID-19"] >= 6 and expected["ieee8023"]["No Finding"] >= 6
    assert [d["reason"] for d in scans["ieee8023"].drops if "CT" in d["reason"]]
    assert (
        labels["actualmed"]
        == {"covid": 5, "normal": 5}
        == {"covid": expected["actualmed"]["COVID-19"], "normal": expected["actualmed"]["No finding"]}
    )
    assert labels["darkcovidnet"] == {"covid": 5, "normal": 6, "pneumonia": 2}
    assert labels["covid19-image-dataset"] == {"covid": 6, "normal": 6, "pneumonia": 2}
    assert labels["hannover"] == {"covid": len(hannover_ids)}
    # DVC recorded the commit and the content hash of each import: the diff a user commits
    for file in sorted((clone / "data/public").glob("*/*.dvc")):
        stage = yaml.safe_load(file.read_text())
        assert stage["deps"][0]["repo"]["rev_lock"] == commits[file.parent.name]
        assert stage["outs"][0]["md5"]
    assert len(git("diff", "--name-only", cwd=clone).splitlines()) == 9


def test_run_on_the_public_sources_completes_and_the_card_names_each_commit_and_licence(public):
    tmp, clone, env, mirrors, commits, expected, hannover_ids, stdout = public
    config = yaml.safe_load((clone / "configs/tiny.yaml").read_text())
    default = yaml.safe_load((clone / "configs/default.yaml").read_text())
    config["data"] |= {"root": "data/raw", "sources": default["data"]["sources"], "cache_dir": str(tmp / "cache")}
    config["models"] = [m | {"epochs": 1} for m in config["models"] if m["kind"] == "cnn"]
    config["promotion"]["model_name"] = "covid-xray-public"
    (clone / "configs/public-mirrors.yaml").write_text(yaml.safe_dump(config))
    result = run(
        sys.executable, "-m", "covid_xray.cli", "run", "--config", "configs/public-mirrors.yaml", cwd=clone, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    card = run(
        sys.executable, "-m", "covid_xray.cli", "card", "--config", "configs/public-mirrors.yaml", cwd=clone, env=env
    )
    assert card.returncode == 0, card.stderr
    section = card.stdout.split("## Data sources and licences\n")[1].split("\n## ")[0]
    assert "Fetched from: DVC imports of the files at the commit, unchanged." in section
    registry = load_registry(clone / "data/sources.yaml").by_name()
    for name, commit in commits.items():
        assert f"| {name} | {mirrors[name].as_uri()} | {commit} | {registry[name].licence} |" in section
    assert "**Non-commercial or unstated terms apply**" in section


def test_a_new_upstream_commit_shows_as_a_dvc_update_diff_and_the_store_is_one_command_away(public):
    tmp, clone, env, mirrors, commits, expected, hannover_ids, stdout = public
    git("commit", "-q", "-am", "the hashes the first fetch recorded", cwd=clone)
    hannover = mirrors["hannover"]
    lines = (hannover / "data.csv").read_text().splitlines(keepends=True)
    extra = lines[1].replace(hannover_ids[0], "new-image")
    (hannover / "data.csv").write_text("".join([*lines, extra]))
    shutil.copy2(hannover / "png" / f"{hannover_ids[0]}.png", hannover / "png/new-image.png")
    new = commit_all(hannover, "a new image upstream")
    targets = ["data/public/hannover/data.csv.dvc", "data/public/hannover/png.dvc"]
    updated = run(DVC, "update", "--rev", new, *targets, cwd=clone)
    assert updated.returncode == 0, updated.stderr
    diff = git("diff", "--", *targets, "data/public/hannover/LICENSE.dvc", cwd=clone)
    for rev in ("rev", "rev_lock"):
        assert f"-    {rev}: {commits['hannover']}" in diff and f"+    {rev}: {new}" in diff
    assert diff.count("+  md5: ") == 2 and "LICENSE.dvc" not in diff  # both outputs changed, the licence did not
    scan = READERS["hannover"](clone / "data/raw/hannover", source="hannover")
    assert len(scan.rows) == len(hannover_ids) + 1

    switched = run(sys.executable, "-m", "covid_xray.cli", "data", "fetch", "--from", "store", cwd=clone, env=env)
    assert switched.returncode == 0, switched.stderr
    assert (clone / "data/raw").resolve() == (clone / "data/store").resolve()
    assert (clone / "data/raw/ieee8023/metadata.csv").read_bytes() == (
        tmp / "shared/datasets/ieee8023/metadata.csv"
    ).read_bytes()
    assert git("diff", "--name-only", "--", "data.dvc", cwd=clone) == ""
