"""ruff as a test: the tree stays lint-clean however the suite is run (test.sh runs it too)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_ruff_finds_nothing() -> None:
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.exists():
        found = shutil.which("ruff")
        if found is None:
            pytest.fail("ruff is not installed: pip install -e '.[test]'")
        ruff = Path(found)
    done = subprocess.run([str(ruff), "check", "--no-cache", str(REPO)], capture_output=True, text=True,
                          cwd=REPO, check=False)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-1000:]
