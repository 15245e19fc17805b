"""install and uninstall: place the driver where the kubelet finds it (the code install.sh runs)."""

from __future__ import annotations

from typing import Annotated

import typer

from flexvol.cli.common import DEFAULT_ROOT, console, friendly_errors
from flexvol.cli.main import app
from flexvol.toolkit import plugindir
from flexvol.toolkit.callrun import DEFAULT_PLUGIN_DIR

PluginDirOption = Annotated[str, typer.Option(help="The kubelet's volume plugin dir.")]


@app.command()
@friendly_errors
def install(plugin_dir: PluginDirOption = DEFAULT_PLUGIN_DIR,
            data_root: Annotated[str, typer.Option(help="The data root in the driver.")] = DEFAULT_ROOT,
            attach: Annotated[bool, typer.Option("--attach", help="Install an attachable driver.")] = False
            ) -> None:
    """Place the driver at <plugin dir>/flexvol~loop/loop, running this flexvol, and check its init.

    Idempotent; the kubelet never sees a half-written driver.

    Example: [bold]flexvol install --plugin-dir /var/lib/kubelet/volumeplugins[/]
    """
    driver, changed = plugindir.place(plugin_dir, data_root, attach)
    console().print(f"driver {driver} {'installed' if changed else 'already up to date'} "
                    f"(attach={attach}, data root {data_root})")


@app.command()
@friendly_errors
def uninstall(plugin_dir: PluginDirOption = DEFAULT_PLUGIN_DIR) -> None:
    """Remove the driver from the plugin dir; the data root and its volumes are kept.

    Example: [bold]flexvol uninstall[/]
    """
    removed = plugindir.remove(plugin_dir)
    console().print(f"removed {', '.join(removed)}" if removed else "no driver installed there")
