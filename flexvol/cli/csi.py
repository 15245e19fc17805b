"""csi: serve the Container Storage Interface (Identity, Controller, Node) on a unix socket."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from flexvol.cli.common import DEFAULT_ROOT, RootOption, friendly_errors, load_config
from flexvol.cli.main import app


@app.command()
@friendly_errors
def csi(endpoint: Annotated[str, typer.Option(
            "--endpoint", envvar="CSI_ENDPOINT", show_envvar=True, metavar="unix:///PATH",
            help="The unix socket to serve on, e.g. "
                 "unix:///var/lib/kubelet/plugins/loop.flexvol.io/csi.sock. "
                 "A stale socket there is removed; a live one is refused.")],
        node_id: Annotated[str, typer.Option(
            "--node-id", envvar="NODE_ID", show_envvar=True, metavar="NODE",
            help="This node's name: NodeGetInfo's node id and the value of the topology key "
                 "topology.flexvol.io/node that pins each volume to its node.")],
        registration_dir: Annotated[str, typer.Option(
            "--registration-dir", envvar="FLEXVOL_CSI_REGISTRATION_DIR", show_envvar=True, metavar="DIR",
            help="The kubelet's plugin registration dir (e.g. /var/lib/kubelet/plugins_registry): the "
                 "plugin registers itself there, so no node-driver-registrar is needed. Leave unset "
                 "when that sidecar runs beside the plugin.")] = "",
        workers: Annotated[int, typer.Option(
            "--workers", min=1, max=64, metavar="N",
            help="RPCs served at once (calls on one volume still take turns on its lock).")] = 4,
        verbose: Annotated[bool, typer.Option(
            "--verbose", "-v", help="Log every RPC (name, volume, status, duration) on stderr.")] = False,
        root: RootOption = DEFAULT_ROOT) -> None:
    """Run the CSI plugin: Identity, Controller (CreateVolume, DeleteVolume,
    ValidateVolumeCapabilities) and Node (stage, publish and their inverses) for the volumes of
    this node's pool, until SIGTERM or SIGINT.

    Volumes are the FlexVolume driver's volumes: the same data root, records and locks.
    Filesystem (mount) volumes with single-node access modes only, for now.

    Example: [bold]flexvol csi --endpoint unix:///run/flexvol/csi.sock --node-id $(hostname)[/]
    """
    # Imported here: grpc loads only for this command, never for the other commands or the driver.
    from flexvol.csi import server

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("flexvol.csi").setLevel(logging.INFO)
    server.serve(load_config(root), endpoint, node_id, workers=workers, registration_dir=registration_dir)
