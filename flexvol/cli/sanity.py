"""`flexvol sanity DRIVER`: check any FlexVolume driver the way the kubelet calls it."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.live import Live

from flexvol.cli import common, render_runs
from flexvol.cli.main import app
from flexvol.cli.output import JsonAliasOption, NoHeadersOption, Output, OutputOption, resolve
from flexvol.core.errors import FlexvolError, InvalidInput
from flexvol.sanity.checks import CHECK_NAMES
from flexvol.sanity.engine import Settings, run_sanity


def parse_options(text: str | None) -> dict[str, str] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as error:
        raise typer.BadParameter(f"not JSON: {error}") from None
    if not isinstance(value, dict) or not all(isinstance(item, str) for item in value.values()):
        raise typer.BadParameter("must be a JSON object whose values are strings")
    return value


def parse_env(items: list[str]) -> dict[str, str]:
    env = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE")
        env[key] = value
    return env


@app.command()
def sanity(
    driver: Annotated[str, typer.Argument(help="The driver executable to check.")],
    options: Annotated[str | None, typer.Option(
        "--options", help='Driver options JSON put in every call; "{volume}" and "{size}" are replaced '
                          'per volume. Default: {"volumeID": "{volume}", "size": "{size}"}.')] = None,
    attach_mode: Annotated[str, typer.Option(
        help="auto (from init's attach capability), kubelet (non-attachable flow) or controller "
             "(attachable flow).")] = "auto",
    repeat: Annotated[int, typer.Option(help="How many times idempotency checks repeat each call.")] = 3,
    only: Annotated[list[str] | None, typer.Option(help=f"Run only this check ({', '.join(CHECK_NAMES)}).")]
    = None,
    skip: Annotated[list[str] | None, typer.Option(help="Skip this check.")] = None,
    json_output: JsonAliasOption = False,
    output: OutputOption = None,
    no_headers: NoHeadersOption = False,
    keep: Annotated[bool, typer.Option(help="Keep the temporary kubelet root.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds each driver call may take.")] = 30.0,
    env: Annotated[list[str] | None, typer.Option(
        help="KEY=VALUE added to the driver's minimal environment (e.g. FLEXVOL_ATTACH=1).")] = None,
    tmp_dir: Annotated[str | None, typer.Option(help="Where to create the temporary node.")] = None,
) -> None:
    """Check a FlexVolume driver against the protocol, calling it exactly as Kubernetes does.

    -o json and -o yaml print the whole report; -o name the checks run.

    Example: [bold]flexvol sanity /usr/libexec/kubernetes/kubelet-plugins/volume/exec/flexvol~loop/loop[/]
    """
    output = resolve(output, json_output)
    settings = Settings(driver, parse_options(options), attach_mode, repeat, list(only or []),
                        list(skip or []), keep, timeout, parse_env(list(env or [])), tmp_dir)
    out = common.console()
    try:
        if output not in (None, Output.WIDE) or not out.is_terminal:
            report = run_sanity(settings)
        else:
            status = render_runs.LiveStatus()
            with Live(status, console=out, transient=True, refresh_per_second=8):
                report = run_sanity(settings, status.event)
    except FlexvolError as error:
        common.print_error(error)
        # A driver or manifest that cannot be used is wrong usage; anything else failed.
        raise typer.Exit(2 if isinstance(error, InvalidInput) else common.EXIT_FAILED) from None
    render_runs.sanity_report(report, out, output, no_headers)
    raise typer.Exit(1 if report.failed else 0)
