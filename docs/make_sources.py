"""Write data/SOURCES.md from data/sources.yaml:

python docs/make_sources.py          # after editing data/sources.yaml
"""

from pathlib import Path

from covid_xray.data.provenance import load_registry, sources_markdown

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    text = sources_markdown(load_registry(ROOT / "data/sources.yaml"))
    (ROOT / "data/SOURCES.md").write_text(text, encoding="utf-8")
