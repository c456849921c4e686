"""Static check of the project's Python: pyflakes' rules through ruff (unused imports and variables, undefined
names, redefinitions), which code review kept finding by hand after merges."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_no_unused_imports_undefined_names_or_dead_assignments():
    folders = ["covid_xray", "steps", "pipelines", "tests", "benchmarks", "infra"]
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--select", "F", "--no-cache",
                             "--output-format", "concise", *folders], cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
