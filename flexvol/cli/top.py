"""top: live I/O per volume from its loop devices' block statistics."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from flexvol.cli import render
from flexvol.cli.common import (
    DEFAULT_KUBELET,
    DEFAULT_ROOT,
    JsonOption,
    KubeletRootOption,
    RootOption,
    console,
    friendly_errors,
    load_config,
    print_json,
)
from flexvol.cli.main import app
from flexvol.core.config import Config
from flexvol.core.errors import InvalidInput
from flexvol.toolkit import inventory, volumeio


@app.command()
@friendly_errors
def top(interval: Annotated[float, typer.Option("--interval", "-i", help="Seconds between samples.")] = 2.0,
        once: Annotated[bool, typer.Option("--once", help="Print one sample and exit (also off a terminal).")]
        = False,
        json_output: JsonOption = False, root: RootOption = DEFAULT_ROOT,
        kubelet_root: KubeletRootOption = DEFAULT_KUBELET,
        samples: Annotated[int, typer.Option(hidden=True, help="Stop after this many samples (0: never).")]
        = 0) -> None:
    """Live I/O per volume: IOPS, throughput, average latency, in-flight requests and queue depth,
    from each loop device's counters in /sys/block/loopN/stat. Redraws like top on a terminal
    (Ctrl-C stops); prints one sample with --once or off a terminal.

    Example: [bold]flexvol top[/] or [bold]flexvol top --once --interval 5[/]
    """
    if not 0.1 <= interval <= 3600:
        raise InvalidInput(f"--interval must be between 0.1 and 3600 seconds, got {interval:g}",
                           "use e.g. --interval 2")
    config = load_config(root)
    out = console()
    before = volumeio.sample(config, volumes_of(config, kubelet_root))
    if once or json_output or not out.is_terminal:
        time.sleep(interval)
        rows = volumeio.between(before, volumeio.sample(config, volumes_of(config, kubelet_root)))
        if json_output:
            print_json(render.top_rows_as_dicts(rows, interval))
        elif not rows:
            out.print("no attached volumes")
        else:
            render.print_unwrapped(out, render.top_table(rows, interval))
        return
    from rich.live import Live

    taken = 0
    try:
        with Live(render.top_table([], interval), console=out, auto_refresh=False, screen=False) as live:
            while not samples or taken < samples:
                time.sleep(interval)
                after = volumeio.sample(config, volumes_of(config, kubelet_root))
                live.update(render.top_table(volumeio.between(before, after), interval), refresh=True)
                before = after
                taken += 1
    except KeyboardInterrupt:
        pass


def volumes_of(config: Config, kubelet_root: str) -> list[inventory.VolumeView]:
    return inventory.volumes(config, kubelet_root)
