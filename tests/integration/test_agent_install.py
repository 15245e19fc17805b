"""The agent's driver install: the package copied once per content, the driver placed by the
same installer as install.sh, and it answers the kubelet's init."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flexvol.cli.main import load_commands
from flexvol.core.errors import FlexvolError
from flexvol.provisioning.install import install_driver
from tests.conftest import TEST_PREFIX
from tests.helpers.driver import MINIMAL_PATH


@pytest.fixture
def base() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix=f"{TEST_PREFIX}agent-install-", dir="/tmp"))
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def init(path: str) -> dict:
    done = subprocess.run([path, "init"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, env={"PATH": MINIMAL_PATH}, timeout=60, check=False)
    assert done.returncode == 0, done.stdout
    return json.loads(done.stdout)


def test_installs_package_and_driver_once(base: Path) -> None:
    plugins, lib, root = base / "plugins", base / "lib", base / "data"
    path, changed = install_driver(str(plugins), str(lib), str(root))
    assert changed
    assert path == str(plugins / "flexvol~loop" / "loop")
    assert os.stat(path).st_mode & 0o777 == 0o755
    [site] = list(lib.iterdir())
    assert (site / "flexvol" / "flex" / "verbs.py").is_file()
    script = Path(path).read_text()
    assert script.startswith("#!/usr/bin/python3 -ISB\n")
    assert repr(str(site)) in script and repr(str(root)) in script
    assert init(path)["capabilities"]["attach"] is False
    # again: nothing rewritten, nothing left over (the kubelet re-probes on any change)
    before = os.stat(path).st_mtime_ns
    assert install_driver(str(plugins), str(lib), str(root)) == (path, False)
    assert os.stat(path).st_mtime_ns == before
    assert sorted(os.listdir(plugins / "flexvol~loop")) == ["loop"]
    assert [entry.name for entry in lib.iterdir()] == [site.name]


def test_attach_choice_replaces_the_driver(base: Path) -> None:
    install_driver(str(base / "plugins"), str(base / "lib"), str(base / "data"))
    path, changed = install_driver(str(base / "plugins"), str(base / "lib"), str(base / "data"), attach=True)
    assert changed
    assert init(path)["capabilities"]["attach"] is True


def test_relative_paths_are_refused(base: Path) -> None:
    with pytest.raises(FlexvolError, match="not an absolute path"):
        install_driver(str(base / "plugins"), "lib", str(base / "data"))
    assert not (base / "plugins").exists()


def test_agent_install_only_installs_the_driver_and_exits(base: Path) -> None:
    result = CliRunner().invoke(load_commands(), [
        "agent", "--install-only", "--plugin-dir", str(base / "plugins"), "--lib-dir", str(base / "lib"),
        "--root", str(base / "data")], env={"COLUMNS": "100", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    assert init(str(base / "plugins" / "flexvol~loop" / "loop"))["status"] == "Success"
