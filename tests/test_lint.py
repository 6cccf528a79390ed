"""The code passes the project's lint rules (pyproject.toml, [tool.ruff]): no unused or undefined names, imports
sorted, no stray whitespace. Run `ruff check . --fix` to mend most findings."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
