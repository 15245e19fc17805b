"""`flexvol ls --watch`: the volumes table kept current. On a terminal it is redrawn in place
(rich Live); off a terminal a new table is printed only when something changed, so a log or a
pipe gets one table per change, not one per look."""

from __future__ import annotations

import io
import json
import time

from rich.console import Console

from flexvol.cli import render
from flexvol.cli.common import console
from flexvol.core.config import Config
from flexvol.core.errors import InvalidInput
from flexvol.toolkit import inventory


def render_text(views: list[inventory.VolumeView], width: int) -> str:
    """The table as plain text, as `flexvol ls` prints it off a terminal."""
    if not views:
        return "no volumes\n"
    scratch = Console(width=width, record=True, file=io.StringIO(), no_color=True, highlight=False)
    render.print_unwrapped(scratch, render.volumes_table(views))
    return scratch.export_text()


def watch_volumes(config: Config, kubelet_root: str, interval: float, watch_for: float,
                  json_output: bool) -> None:
    """Look every `interval` seconds until Ctrl-C (or `watch_for` seconds, for tests)."""
    if not 0.1 <= interval <= 3600:
        raise InvalidInput(f"--interval must be between 0.1 and 3600 seconds, got {interval:g}",
                           "use e.g. --interval 2")
    out = console()
    deadline = time.monotonic() + watch_for if watch_for > 0 else None
    last = None
    live = None
    try:
        if out.is_terminal and not json_output:
            from rich.live import Live

            live = Live(console=out, auto_refresh=False)
            live.start()
        while True:
            views = inventory.volumes(config, kubelet_root)
            if live is not None:
                live.update(render.volumes_table(views) if views else "no volumes", refresh=True)
            else:
                # JSON: one compact document per line (jq reads a stream of them).
                text = (json.dumps([item.as_dict() for item in views]) + "\n" if json_output
                        else render_text(views, out.width))
                if text != last:
                    out.file.write(text)
                    out.file.flush()
                    last = text
            if deadline is not None and time.monotonic() + interval > deadline:
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        return
    finally:
        if live is not None:
            live.stop()
