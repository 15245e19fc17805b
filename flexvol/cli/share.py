"""share: let pods of other namespaces mount a volume, or take that back."""

from __future__ import annotations

from typing import Annotated

import typer

from flexvol.cli.common import DEFAULT_ROOT, RootOption, console, friendly_errors, load_config
from flexvol.cli.main import app
from flexvol.core import ownership


@app.command()
@friendly_errors
def share(volume_id: Annotated[str, typer.Argument(help="The volume id.")],
          off: Annotated[bool, typer.Option("--off", help="Only the owning namespace again.")] = False,
          root: RootOption = DEFAULT_ROOT) -> None:
    """Let pods of every namespace mount a volume (by default only the namespace that first
    mounted it, or whose claim made it, may).

    Example: [bold]flexvol share data-1[/] or [bold]flexvol share data-1 --off[/]
    """
    record = ownership.set_shareable(load_config(root), volume_id, not off)
    owner = record.get("namespace") or "no namespace yet"
    if off:
        console().print(f"volume {volume_id}: only its namespace ({owner}) may mount it")
    else:
        console().print(f"volume {volume_id}: pods of every namespace may mount it (owner: {owner})")
