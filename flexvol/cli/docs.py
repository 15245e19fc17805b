"""docs/cli.md, the command reference, written from the commands' own help.

    python -m flexvol.cli.docs            # rewrite docs/cli.md
    python -m flexvol.cli.docs --check    # exit 1 when docs/cli.md is out of date

tests/unit/test_cli_docs.py fails while the checked-in file differs from what this writes.
"""

from __future__ import annotations

import inspect
import re
import socket
import sys
from pathlib import Path
from typing import Any

from rich.text import Text

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "cli.md"
REFRESH = "python -m flexvol.cli.docs"
HEADER = f"""# flexvol command reference

Generated from the commands' own help (`flexvol COMMAND --help` says the same). Do not edit by
hand: after changing a command run `{REFRESH}` (or `make cli-docs`); a test fails while this
file is out of date.
"""


def plain(markup: str) -> str:
    """Help text in rich markup to Markdown: [bold]x[/] becomes `x`, other tags go."""
    text = re.sub(r"\[bold\](.+?)\[/(bold)?\]", r"`\1`", inspect.cleandoc(markup))
    return Text.from_markup(text).plain


def cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def default_of(param: Any) -> str:
    """The default as help shows it; one computed from this machine is named, not printed."""
    value = param.default
    if getattr(param, "is_flag", False) and param.secondary_opts:
        return (param.opts if value else param.secondary_opts)[0]
    if value is None or value == "" or value is False or value == [] or callable(value):
        return ""
    if isinstance(value, bool):
        return "on"
    if value == socket.gethostname():
        return "this host's name"
    return str(getattr(value, "value", value))


def params_table(command: Any, ctx: Any) -> list[str]:
    arguments, options = [], []
    for param in command.get_params(ctx):
        if getattr(param, "hidden", False):
            continue
        if param.param_type_name == "argument":
            required = " (required)" if param.required else ""
            name = param.metavar or param.name.upper()
            arguments.append(f"| `{name}`{required} | {cell(plain(param.help or ''))} |")
            continue
        flags = [*param.opts, *param.secondary_opts]
        if param.name == "help":
            flags.sort()  # click builds them from a set: any order from one run to the next
        names = ", ".join(f"`{flag}`" for flag in flags)
        value = param.display_type_rich(ctx) or ""
        notes = []
        if param.required:
            notes.append("required")
        default = default_of(param) if param.show_default is not False else ""
        if default and (not param.is_flag or param.secondary_opts):
            notes.append(f"default: `{default}`")
        if param.envvar and param.show_envvar:
            notes.append(f"env: `{param.envvar}`")
        help_text = plain(param.help or "") + (f" ({'; '.join(notes)})" if notes else "")
        options.append(f"| {names} | {f'`{value}`' if value else ''} | {cell(help_text)} |")
    lines = []
    if arguments:
        lines += ["", "| Argument | Description |", "| --- | --- |", *arguments]
    if options:
        lines += ["", "| Option | Value | Description |", "| --- | --- | --- |", *options]
    return lines


def section(command: Any, ctx: Any, title: str) -> list[str]:
    usage = " ".join([ctx.command_path, *command.collect_usage_pieces(ctx)])
    lines = [f"## {title}", "", "```", usage, "```"]
    if command.help:
        lines += ["", plain(command.help)]
    return [*lines, *params_table(command, ctx), ""]


def render() -> str:
    """The whole reference: the flexvol group, then each command by name."""
    from typer.main import get_command

    from flexvol.cli.main import load_commands

    group = get_command(load_commands())
    root = group.make_context("flexvol", [], resilient_parsing=True)
    lines = [HEADER]
    lines += section(group, root, "flexvol")
    names = sorted(group.commands)  # type: ignore[attr-defined]
    lines += ["Commands: " + ", ".join(f"[{name}](#flexvol-{name})" for name in names), ""]
    for name in names:
        command = group.commands[name]  # type: ignore[attr-defined]
        ctx = command.make_context(name, [], parent=root, resilient_parsing=True)
        lines += section(command, ctx, f"flexvol {name}")
        # A command group (flexvol snapshot): each of its commands in its own section.
        for sub in sorted(getattr(command, "commands", {})):
            inner = command.commands[sub]
            lines += section(inner, inner.make_context(sub, [], parent=ctx, resilient_parsing=True),
                             f"flexvol {name} {sub}")
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not DOC.exists() or DOC.read_text() != text:
            print(f"{DOC} is out of date: run {REFRESH}", file=sys.stderr)
            return 1
        return 0
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(text)
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
