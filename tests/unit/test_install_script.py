"""install.sh says it builds flexvol with the virtual environment's own setuptools: pip must
then be told not to build in an isolated environment (which fetches setuptools at every
install), and the venv must have setuptools and wheel first. The installs themselves run in
tests/bats (into a temporary prefix)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "install.sh"


def pip_commands() -> list[str]:
    text = SCRIPT.read_text().replace("\\\n", " ")
    return [" ".join(line.split()) for line in text.splitlines() if re.search(r"/pip\" install", line)]


def test_the_package_is_built_without_build_isolation() -> None:
    """install.sh claimed to build with the venv's setuptools while pip's build isolation
    fetched them."""
    [ensure, package] = pip_commands()  # in this order: the build tools first
    assert '"setuptools>=61" wheel' in ensure
    assert '"$SOURCE"' in package and "--no-build-isolation" in package


def test_help_runs_without_installing_anything() -> None:
    done = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "--prefix DIR" in done.stdout
