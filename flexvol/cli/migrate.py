"""migrate-pv: turn a bound FlexVolume PersistentVolume into a CSI one for the same volume.

The Kubernetes client is imported only when the command runs, so the other commands start
without it.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from flexvol.cli.audit import journaled
from flexvol.cli.common import DEFAULT_ROOT, RootOption, console, friendly_errors, load_config
from flexvol.cli.main import app
from flexvol.core.errors import FlexvolError


@app.command("migrate-pv")
@friendly_errors
def migrate_pv(
    pv: Annotated[str, typer.Argument(help="The FlexVolume PersistentVolume's name.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")] = False,
    node: Annotated[str, typer.Option("--node", envvar="NODE_NAME", show_envvar=True,
                                      help="This machine's node name.")] = socket.gethostname(),
    kubeconfig: Annotated[Path | None, typer.Option(
        "--kubeconfig", help="Kubeconfig file; without it, the pod's service account.")] = None,
    timeout: Annotated[float, typer.Option(min=0, help="Seconds to wait for the old PV to go and "
                                           "for the claim to be Bound again.")] = 120.0,
    root: RootOption = DEFAULT_ROOT,
) -> None:
    """Turn a bound PersistentVolume of the FlexVolume driver (flexvol/loop) into a CSI
    PersistentVolume (loop.flexvol.io) of the same name for the same volume and data; its claim
    is bound to it again. Run it on the volume's node while no pod uses the claim. A run that
    was stopped is finished by running it again.

    Example: [bold]flexvol migrate-pv pvc-0b6c... --dry-run[/]
    """
    from kubernetes.config import ConfigException

    from flexvol.provisioning import migration
    from flexvol.provisioning.cluster import ApiError
    from flexvol.provisioning.kube import KubeCluster, api_client
    from flexvol.provisioning.migrator import Migrator, state_path

    config = load_config(root)
    out = console()
    try:
        cluster = KubeCluster(api_client(str(kubeconfig) if kubeconfig else None))
    except (ConfigException, OSError) as error:
        raise FlexvolError(f"cannot load the Kubernetes configuration: {error}",
                           "pass --kubeconfig") from None
    migrator = Migrator(cluster, config, node, timeout=timeout, say=lambda line: out.print(escape(line)))
    try:
        plan, started = migrator.plan(pv)
        if plan is None:
            out.print(f"PersistentVolume {escape(pv)} is a CSI PV of {migration.CSI_DRIVER} already: "
                      "nothing to do")
            return
        if dry_run:
            if started:
                out.print(f"a migration began; its plan is {escape(state_path(config, pv))}; "
                          "a run goes on from the first step not yet done")
            for number, step in enumerate(migration.steps(plan), 1):
                out.print(f"{number}. {escape(step)}")
            out.print("the new PersistentVolume:")
            typer.echo(json.dumps(migration.csi_pv(plan), indent=2))
            return
        # Who moved a volume to CSI, and how far it got, is worth finding in `flexvol calls`.
        with journaled(config, "migrate-pv", plan.volume_id, (pv,)) as action:
            action.message = migrator.run(pv)
        out.print(escape(action.message))
    except ApiError as error:
        raise FlexvolError(f"the API server refused: {error}", "run this again once it answers") from None
