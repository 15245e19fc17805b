"""The command line itself: --version, shell completion of choices, simulate with nothing to do."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flexvol import __version__
from flexvol.cli.main import load_commands
from tests.helpers.cli import ENV, flexvol


def complete(line: str) -> list[str]:
    """What bash completion offers for the last word of `line` (typer's own completion)."""
    words = line.split(" ")
    env = {**ENV, "_FLEXVOL_COMPLETE": "complete_bash", "COMP_WORDS": line, "COMP_CWORD": str(len(words) - 1)}
    result = CliRunner().invoke(load_commands(), [], env=env, prog_name="flexvol")
    assert result.exit_code == 0, result.output
    return result.stdout.split()


def test_version_option_prints_the_version() -> None:
    """`flexvol --version`, as operators reach for it; the `version` command stays."""
    for args in (["--version"], ["version"]):
        result = flexvol(*args)
        assert result.exit_code == 0 and result.stdout.strip() == __version__, result.output


@pytest.mark.parametrize("line,offered", [
    ("flexvol create v1 --fs ", ["ext4", "ext3", "xfs", "btrfs"]),
    ("flexvol create v1 --fs x", ["xfs"]),
    ("flexvol calls --verb mount", ["mountdevice", "mount"]),
    ("flexvol calls --verb toolkit:r", ["toolkit:resize", "toolkit:repair"]),
    ("flexvol call unm", ["unmountdevice", "unmount"]),
])
def test_completion_offers_the_choices_not_file_names(line: str, offered: list[str]) -> None:
    """Defect 7: completion of --fs and --verb offered file names instead of the choices."""
    assert complete(line) == offered


MANIFESTS = """
kind: Pod
metadata: {name: plain}
spec:
  containers: [{name: app, image: busybox}]
  volumes:
    - {name: cache, emptyDir: {}}
    - {name: conf, configMap: {name: conf}}
---
kind: Pod
metadata: {name: bare}
spec:
  containers: [{name: app, image: busybox}]
---
kind: Deployment
metadata: {name: web}
"""


@pytest.mark.parametrize("extra", [[], ["--json"], ["--dry-run"]])
def test_simulate_without_any_flexvolume_says_so(tmp_path: Path, extra: list[str]) -> None:
    """Defect 7: manifests without a flexVolume printed nothing and exited 0; now exit code 2
    and a message saying there is nothing to simulate, and why."""
    manifest = tmp_path / "plain.yaml"
    manifest.write_text(MANIFESTS)
    result = flexvol("simulate", "-f", str(manifest), "--tmp-dir", str(tmp_path), *extra)
    assert result.exit_code == 2, result.output
    assert "no volume in the manifests is served by a FlexVolume driver" in result.stderr
    assert "default/plain/cache" in result.stderr and "ignored:" in result.stderr
    assert "flexVolume" in result.stderr  # the hint says what simulate walks
    assert result.stdout == ""
    assert [path.name for path in tmp_path.iterdir()] == ["plain.yaml"], "no temporary node made"
