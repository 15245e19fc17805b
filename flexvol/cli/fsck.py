"""fsck: check an idle volume's filesystem offline, and with --repair fix it."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from flexvol.cli.audit import journaled
from flexvol.cli.common import (
    DEFAULT_ROOT,
    EXIT_FINDINGS,
    JsonOption,
    RootOption,
    console,
    friendly_errors,
    load_config,
    print_json,
)
from flexvol.cli.main import app
from flexvol.cli.volumes import VolumeArgument
from flexvol.core import runner
from flexvol.toolkit import fsck as fsck_module

VERDICT_STYLE = {
    fsck_module.CLEAN: "green",
    fsck_module.REPAIRED: "green",
    fsck_module.ERRORS: "bold red",
    fsck_module.ERRORS_LEFT: "bold red",
    fsck_module.FAILED: "bold red",
}


@app.command()
@friendly_errors
def fsck(volume_id: VolumeArgument,
         repair: Annotated[bool, typer.Option(
             "--repair", help="Repair what the check finds (ext: e2fsck -p, the fixes that are safe "
                              "without a person; xfs: xfs_repair), then check again.")] = False,
         json_output: JsonOption = False, root: RootOption = DEFAULT_ROOT) -> None:
    """Check the filesystem of an idle volume: e2fsck -f -n (ext), xfs_repair -n (xfs) or btrfs
    check --readonly (btrfs) on a loop device attached for the check and detached after.

    Refused while anything mounts or attaches the volume. The check opens the filesystem
    read-only; --repair checks, repairs only when errors were found and checks again. Exit code
    0 clean or repaired, 3 errors found or left, 1 refused or the checker could not run.

    Example: [bold]flexvol fsck data-1[/], then [bold]flexvol fsck data-1 --repair[/]
    """
    config = load_config(root, must_exist=True)
    out = console()
    live = out.is_terminal and not json_output
    args = (volume_id, *(("--repair",) if repair else ()))
    with journaled(config, "fsck", volume_id, args) as action, Progress(
            TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
            console=out, transient=True, disable=not live) as bar:
        task = bar.add_task("starting", total=1.0)

        def on_start(device: str, argv: list[str]) -> None:
            bar.reset(task, description=escape(argv[0]), total=1.0)
            if not json_output:
                out.print(f"checking {volume_id} on {device}: {escape(runner.shell_line(argv))}")

        def on_line(line: str) -> None:
            if json_output:
                return
            if live:
                bar.update(task, description=escape(f"{line.strip()[:40]}"))
            out.print(escape(line), highlight=False)

        def on_fraction(fraction: float) -> None:
            bar.update(task, completed=fraction)

        result = fsck_module.fsck(config, volume_id, repair=repair, on_line=on_line,
                                  on_fraction=on_fraction, on_start=on_start)
        action.message = fsck_module.describe(result)
    if json_output:
        print_json(result.as_dict())
    else:
        style = VERDICT_STYLE.get(result.verdict, "")
        line = escape(fsck_module.describe(result))
        out.print(line.replace(f": {result.verdict} (", f": [{style}]{result.verdict}[/] (", 1))
        for note in result.notes:
            out.print(f"  hint: {escape(note)}")
    if not result.detached:
        raise typer.Exit(1)
    if result.verdict in (fsck_module.ERRORS, fsck_module.ERRORS_LEFT):
        raise typer.Exit(EXIT_FINDINGS)
    if result.verdict == fsck_module.FAILED:
        raise typer.Exit(1)
