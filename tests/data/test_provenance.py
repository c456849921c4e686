"""The source registry (data/sources.yaml) against the committed DVC imports, SOURCES.md and what a run records."""

from pathlib import Path

import pytest
import yaml
from fixtures import ROOT

from covid_xray.config import SourceConfig, load_config
from covid_xray.data.provenance import (
    DvcImport,
    data_version,
    dvc_imports,
    load_registry,
    origin_of,
    registry_mismatches,
    source_records,
    sources_markdown,
)

REGISTRY = load_registry(ROOT / "data/sources.yaml")


def test_every_source_of_the_main_job_is_imported_at_the_registry_commit_by_the_committed_dvc_files():
    imports = dvc_imports(ROOT / "data/public")
    assert registry_mismatches(REGISTRY, imports) == []
    default = load_config(ROOT / "configs/default.yaml").data
    known = REGISTRY.by_name()
    assert {(s.label, s.reader) for s in default.sources} == {(s.name, s.reader) for s in REGISTRY.sources}
    for item in imports:
        source = known[item.source]
        # each import pins the exact commit, materializes under data/public/<source>/ in the upstream layout
        assert item.rev == source.commit and item.url == source.repository
        stage = yaml.safe_load(item.file.read_text())
        assert stage["frozen"] is True and stage["outs"][0]["path"] == item.path
        assert item.file == ROOT / "data/public" / source.name / f"{item.path}.dvc"


def test_sources_md_is_generated_from_the_registry_and_states_non_commercial_terms():
    text = (ROOT / "data/SOURCES.md").read_text(encoding="utf-8")
    assert text == sources_markdown(REGISTRY), "data/SOURCES.md is stale: run python docs/make_sources.py"
    assert "**Non-commercial or unstated terms apply** to ieee8023 (some images), actualmed (all)" in text
    for source in REGISTRY.sources:
        assert f"commit `{source.commit}`" in text and source.licence in text


def imported(source: str, path: str, commit: str, md5: str | None = "0" * 32) -> DvcImport:
    return DvcImport(
        file=Path(f"data/public/{source}/{path}.dvc"),
        source=source,
        path=path,
        url="https://github.com/ml-workgroup/covid-19-image-repository",
        rev=commit,
        rev_lock=commit,
        md5=md5,
    )


def test_an_import_moved_to_another_commit_or_missing_a_path_is_reported():
    hannover = REGISTRY.by_name()["hannover"]
    single = REGISTRY.model_copy(update={"sources": [hannover]})
    moved = [imported("hannover", path, hannover.commit) for path in hannover.paths]
    assert registry_mismatches(single, moved) == []
    moved[1] = imported("hannover", "png", "f" * 40)
    assert registry_mismatches(single, moved) == [
        f"data/public/hannover/png.dvc: commit {'f' * 40}, the registry says {hannover.commit}"
    ]
    assert registry_mismatches(single, moved[:1]) == [
        "hannover: the .dvc files import ['data.csv'], the registry lists ['LICENSE', 'data.csv', 'png']"
    ]


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder with the repository's data.dvc and public imports, as the working directory."""
    (tmp_path / "data/public").mkdir(parents=True)
    (tmp_path / "data.dvc").write_text((ROOT / "data.dvc").read_text())
    for file in (ROOT / "data/public").glob("*/*.dvc"):
        (tmp_path / "data/public" / file.parent.name).mkdir(exist_ok=True)
        (tmp_path / "data/public" / file.parent.name / file.name).write_text(file.read_text())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def default_data(root: str):
    return load_config(ROOT / "configs/default.yaml").data.model_copy(update={"root": root})


def test_a_run_on_the_store_records_each_sources_commit_and_licence(project):
    (project / "data/store").mkdir()
    (project / "data/raw").symlink_to("store")
    assert origin_of(Path("data/raw")) == "store"
    records = {r["source"]: r for r in source_records(default_data("data/raw"), REGISTRY)}
    assert list(records) == ["ieee8023", "hannover", "actualmed", "darkcovidnet", "covid19-image-dataset"]
    hannover = records["hannover"]
    assert hannover["commit"] == "ad7ab099b425f16e06bba22322336b7d6a732965" and hannover["origin"] == "store"
    assert hannover["licence"].startswith("CC BY 3.0") and hannover["non_commercial"] == "no"
    assert records["actualmed"]["non_commercial"] == "all"
    recorded = yaml.safe_load((ROOT / "data.dvc").read_text())["outs"][0]["md5"]
    assert data_version(Path("data/raw")) == recorded.removesuffix(".dir")[:12]


def test_a_run_on_the_public_imports_records_the_commit_dvc_fetched_and_its_version_follows_it(project):
    (project / "data/raw").symlink_to("public")
    before = data_version(Path("data/raw"))
    assert origin_of(Path("data/raw")) == "public" and before.startswith("public-")
    png = project / "data/public/hannover/png.dvc"
    stage = yaml.safe_load(png.read_text())
    stage["deps"][0]["repo"]["rev_lock"] = "e" * 40  # what `dvc update --rev` records for a newer commit
    png.write_text(yaml.safe_dump(stage))
    records = {r["source"]: r for r in source_records(default_data("data/raw"), REGISTRY)}
    assert records["hannover"]["commit"] == f"ad7ab099b425f16e06bba22322336b7d6a732965, {'e' * 40}"
    assert records["ieee8023"]["commit"] == "173779df5bb2ab06fa1dc7f84ee9a212c759464b"
    assert data_version(Path("data/raw")) != before


def test_a_users_own_folder_is_recorded_without_guessing_a_commit_or_licence(project):
    own = SourceConfig(reader="folder", path="exports", name="st-elsewhere", labels={"COVID": "covid"})
    data = default_data("hospital").model_copy(update={"sources": [default_data("x").sources[0], own]})
    records = source_records(data, REGISTRY)
    assert records[0]["origin"] == "folder" and records[0]["commit"].startswith("unknown (a folder")
    assert records[1]["licence"] == "not recorded: not a public source of data/sources.yaml"
    assert records[1]["repository"] == "" and data_version(Path("hospital")) == "untracked"
