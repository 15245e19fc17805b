"""The `flexvol` command. Each command group lives in its own module under flexvol/cli and
registers itself on `app`; list the module in COMMAND_MODULES to load it."""

from __future__ import annotations

import importlib
from typing import Annotated

import typer

from flexvol import __version__
from flexvol.cli import helpfmt

app = helpfmt.Typer(
    name="flexvol",
    cls=helpfmt.Group,
    help="Operate the flexvol loop-device FlexVolume driver and check any FlexVolume driver.",
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)

# One module per command group; each adds its commands to `app` when imported.
COMMAND_MODULES: tuple[str, ...] = (
    "volumes", "calls", "repair", "doctor", "install", "sanity", "simulate", "provision",
    "share", "top", "fsck", "csi", "snapshots", "migrate",
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print flexvol's version and exit.")] = False) -> None:
    """Operate the flexvol loop-device FlexVolume driver and check any FlexVolume driver."""


@app.command()
def version() -> None:
    """Print flexvol's version."""
    typer.echo(__version__)


def load_commands() -> typer.Typer:
    for name in COMMAND_MODULES:
        importlib.import_module(f"flexvol.cli.{name}")
    return app


def run() -> None:
    load_commands()()
