"""Installing the driver from the agent: package copy and atomic driver file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flexvol.errors import InvalidInput
from flexvol.provisioning.install import install_driver


def test_installs_package_and_driver_once(tmp_path: Path) -> None:
    plugins, lib, root = tmp_path / "plugins", tmp_path / "lib", tmp_path / "data"
    path, changed = install_driver(str(plugins), str(lib), str(root))
    assert changed
    assert path == str(plugins / "flexvol~loop" / "loop")
    assert os.stat(path).st_mode & 0o777 == 0o755
    [site] = list(lib.iterdir())
    assert (site / "flexvol" / "verbs.py").is_file()
    assert not list(site.rglob("__pycache__"))
    script = Path(path).read_text()
    assert script.startswith("#!/usr/bin/python3 -ISB\n")
    assert f'sys.path.insert(0, "{site}")' in script
    assert f'data_root="{root}", attach=False' in script
    # again: nothing rewritten, nothing left over (the kubelet re-probes on any change)
    before = os.stat(path).st_mtime_ns
    assert install_driver(str(plugins), str(lib), str(root)) == (path, False)
    assert os.stat(path).st_mtime_ns == before
    assert sorted(os.listdir(plugins / "flexvol~loop")) == ["loop"]
    assert [entry.name for entry in lib.iterdir()] == [site.name]


def test_changed_settings_replace_the_driver(tmp_path: Path) -> None:
    plugins, lib = tmp_path / "plugins", tmp_path / "lib"
    install_driver(str(plugins), str(lib), str(tmp_path / "data"))
    path, changed = install_driver(str(plugins), str(lib), str(tmp_path / "data"), attach=True)
    assert changed
    assert "attach=True" in Path(path).read_text()


@pytest.mark.parametrize("data_root", ["relative/dir", '/tmp/x"; import os; "'])
def test_paths_that_cannot_be_written_plainly_are_refused(tmp_path: Path, data_root: str) -> None:
    with pytest.raises(InvalidInput):
        install_driver(str(tmp_path / "plugins"), str(tmp_path / "lib"), data_root)
    assert not (tmp_path / "plugins" / "flexvol~loop" / "loop").exists()
