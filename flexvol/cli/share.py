"""share: let pods of other namespaces mount a volume, or take that back."""

from __future__ import annotations

from typing import Annotated

import typer

from flexvol.cli.audit import journaled
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
    config = load_config(root)
    # Who opened a volume to other namespaces is worth knowing later: journaled.
    with journaled(config, "share", volume_id, (volume_id, "--off") if off else (volume_id,)) as action:
        record = ownership.set_shareable(config, volume_id, not off)
        owner = record.namespace or "no namespace yet"
        action.message = (f"volume {volume_id}: only its namespace ({owner}) may mount it" if off else
                          f"volume {volume_id}: pods of every namespace may mount it (owner: {owner})")
    console().print(action.message)
