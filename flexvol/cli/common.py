"""What every command shares: the data root and kubelet root options, one console, and the
translation of library errors into a message and an exit code (never a traceback).

Exit codes: 0 done; 1 refused or failed (the message says why); 2 wrong usage;
3 `repair` found something it did not fix; 4 `doctor` found a FAIL.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from flexvol.core import config as config_module
from flexvol.core.config import Config
from flexvol.core.errors import FlexvolError
from flexvol.toolkit.inventory import DEFAULT_KUBELET_ROOT

EXIT_FAILED = 1
EXIT_FINDINGS = 3
EXIT_DOCTOR_FAIL = 4

RootOption = Annotated[str, typer.Option(
    "--root", envvar="FLEXVOL_ROOT", show_envvar=True, metavar="PATH",
    help="The driver's data root.")]
KubeletRootOption = Annotated[str, typer.Option(
    "--kubelet-root", envvar="FLEXVOL_KUBELET_ROOT", show_envvar=True, metavar="PATH",
    help="The kubelet's root dir (its pod dirs name the pods using a volume).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

DEFAULT_ROOT = config_module.DEFAULT_DATA_ROOT
DEFAULT_KUBELET = DEFAULT_KUBELET_ROOT


# Off a terminal a line is as long as it is: rich would otherwise wrap at 80 columns.
UNBOUNDED = 1 << 20


def console(stderr: bool = False) -> Console:
    """stdout (or stderr) for people. On a terminal rich wraps at its width (COLUMNS pins it);
    in a pipe or a file nothing is ever wrapped nor cut, so scripts see one line per line."""
    # rich turns colour off by itself when stdout is not a terminal and honours NO_COLOR.
    width = os.environ.get("COLUMNS")
    out = Console(stderr=stderr, width=int(width) if width and width.isdigit() else None,
                  highlight=False, soft_wrap=False)
    if out.is_terminal:
        return out
    return Console(stderr=stderr, width=UNBOUNDED, highlight=False, soft_wrap=True)


def error_console() -> Console:
    return console(stderr=True)


def load_config(root: str, *, must_exist: bool = False) -> Config:
    """The config of `root`; with must_exist (commands that read the pool), an error naming the
    path and the fix when the root is missing or unreadable, never an empty pool."""
    config = config_module.Config(root or DEFAULT_ROOT)
    if must_exist:
        from flexvol.toolkit import dataroot

        found = dataroot.problem(config)
        if found is not None:
            raise found
    return config


def print_json(value: object) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=False))


F = TypeVar("F", bound=Callable[..., object])


def print_error(error: FlexvolError) -> None:
    """`error: message` and `  hint: ...` on stderr, the toolkit's one way to report a refusal."""
    error_console().print(f"[bold red]error:[/] {escape(error.message)}")
    if error.hint:
        error_console().print(f"  hint: {escape(error.hint)}")


def friendly_errors(function: F) -> F:
    """Turn FlexvolError (and a few OS errors) into `error: ...` on stderr and exit code 1."""

    @functools.wraps(function)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return function(*args, **kwargs)
        except FlexvolError as error:
            print_error(error)
            raise typer.Exit(EXIT_FAILED) from None
        except PermissionError as error:
            error_console().print(f"[bold red]error:[/] {escape(str(error))}")
            error_console().print("  hint: run as root")
            raise typer.Exit(EXIT_FAILED) from None

    return wrapper  # type: ignore[return-value]
