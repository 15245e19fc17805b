from __future__ import annotations

from typer.testing import CliRunner

from flexvol import __version__
from flexvol.cli.main import load_commands


def test_version_command() -> None:
    result = CliRunner().invoke(load_commands(), ["version"], env={"COLUMNS": "100", "NO_COLOR": "1"})
    assert result.exit_code == 0
    assert result.output.strip() == __version__
