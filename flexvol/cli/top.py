"""top: live I/O per volume from its loop devices' block statistics."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from flexvol.cli import render
from flexvol.cli.common import (
    DEFAULT_KUBELET,
    DEFAULT_ROOT,
    KubeletRootOption,
    RootOption,
    console,
    friendly_errors,
    load_config,
)
from flexvol.cli.main import app
from flexvol.cli.output import Column, JsonAliasOption, NoHeadersOption, OutputOption, emit, resolve
from flexvol.core.config import Config
from flexvol.core.errors import InvalidInput
from flexvol.toolkit import inventory, volumeio


@app.command()
@friendly_errors
def top(interval: Annotated[float, typer.Option("--interval", "-i", help="Seconds between samples.")] = 2.0,
        once: Annotated[bool, typer.Option("--once", help="Print one sample and exit (also off a terminal).")]
        = False,
        output: OutputOption = None, no_headers: NoHeadersOption = False,
        json_output: JsonAliasOption = False, root: RootOption = DEFAULT_ROOT,
        kubelet_root: KubeletRootOption = DEFAULT_KUBELET,
        samples: Annotated[int, typer.Option(hidden=True, help="Stop after this many samples (0: never).")]
        = 0) -> None:
    """Live I/O per volume: IOPS, throughput, average latency, in-flight requests and queue depth,
    from each loop device's counters in /sys/block/loopN/stat. Redraws like top on a terminal
    (Ctrl-C stops); prints one sample with --once or off a terminal.

    -o name prints the volumes in the sample, busiest first.

    Example: [bold]flexvol top[/] or [bold]flexvol top --once --interval 5[/]
    """
    output = resolve(output, json_output)
    if not 0.1 <= interval <= 3600:
        raise InvalidInput(f"--interval must be between 0.1 and 3600 seconds, got {interval:g}",
                           "use e.g. --interval 2")
    config = load_config(root)
    out = console()
    before = volumeio.sample(config, volumes_of(config, kubelet_root))
    if once or output is not None or no_headers or not out.is_terminal:
        time.sleep(interval)
        rows = volumeio.between(before, volumeio.sample(config, volumes_of(config, kubelet_root)))
        emit(render.top_rows_as_dicts(rows, interval), TOP_COLUMNS, output, no_headers,
             name="volume_id", empty="no attached volumes")
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


def _who(row: dict) -> str:
    return f"{row['pv'] or '?'} ({row['claim']})" if row.get("claim") else (row.get("pv") or "-")


TOP_COLUMNS = (
    Column("VOLUME", "volume_id"),
    Column("PV", _who),
    Column("LOOP", "loop_devices"),
    Column("R/S", lambda row: f"{row['read_iops']:.0f}", justify="right"),
    Column("W/S", lambda row: f"{row['write_iops']:.0f}", justify="right"),
    Column("READ", lambda row: render.per_second(row["read_bytes_per_second"]), justify="right"),
    Column("WRITE", lambda row: render.per_second(row["write_bytes_per_second"]), justify="right"),
    Column("R LAT", lambda row: f"{row['read_latency_ms']:.1f}ms", justify="right"),
    Column("W LAT", lambda row: f"{row['write_latency_ms']:.1f}ms", justify="right"),
    Column("INFLIGHT", "in_flight", justify="right"),
    Column("BUSY", lambda row: f"{row['busy']:.0%}", justify="right"),
    Column("QUEUE", lambda row: f"{row['queue_depth']:.2f}", justify="right"),
)


def volumes_of(config: Config, kubelet_root: str) -> list[inventory.VolumeView]:
    return inventory.volumes(config, kubelet_root)
