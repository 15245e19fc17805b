"""docs/cli.md is the commands' own help, and current."""

from __future__ import annotations

import difflib

import pytest

from flexvol.cli import docs


def test_cli_reference_is_current() -> None:
    """docs/cli.md must be what `python -m flexvol.cli.docs` writes from today's commands."""
    expected = docs.render()
    found = docs.DOC.read_text() if docs.DOC.exists() else ""
    if found != expected:
        diff = "".join(list(difflib.unified_diff(found.splitlines(True), expected.splitlines(True),
                                                 "docs/cli.md", "generated"))[:40])
        pytest.fail(f"docs/cli.md is out of date: run `{docs.REFRESH}` (or `make cli-docs`)\n{diff}")


def test_cli_reference_covers_every_command_and_option() -> None:
    from typer.main import get_command

    from flexvol.cli.main import load_commands

    text = docs.render()
    group = get_command(load_commands())
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        assert f"## flexvol {name}\n" in text
        for param in command.params:
            # Hidden options (test bounds such as --follow-for) are left out on purpose.
            if param.param_type_name == "option" and not getattr(param, "hidden", False):
                assert f"`{param.opts[0]}`" in text, (name, param.opts)
    assert "<str>" not in text and "<bool>" not in text
