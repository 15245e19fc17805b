"""`flexvol provisioner` (cluster side) and `flexvol agent` (node side): dynamic provisioning.

Both run until SIGTERM or SIGINT. The Kubernetes client is imported only when one of them
runs, so the other commands start without it.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from pathlib import Path
from typing import Annotated

import typer

from flexvol.cli.common import DEFAULT_KUBELET, DEFAULT_ROOT, KubeletRootOption, RootOption
from flexvol.cli.main import app
from flexvol.core import config as flexvol_config
from flexvol.core.errors import FlexvolError
from flexvol.core.quantity import parse_quantity
from flexvol.provisioning import names

PLUGIN_DIR = "/usr/libexec/kubernetes/kubelet-plugins/volume/exec"
LIB_DIR = "/opt/flexvol/lib"
LEASE = "flexvol-loop-provisioner"
HOST_PYTHON = "/usr/bin/python3"
METRICS_ADDRESS = "127.0.0.1"

Kubeconfig = Annotated[Path | None, typer.Option(
    "--kubeconfig", help="Kubeconfig file; without it, the pod's service account.")]
Name = Annotated[str, typer.Option("--name", help="The provisioner name StorageClasses give.")]


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    return stop


def _logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"flexvol: {message}", err=True)
    return typer.Exit(1)


def _cluster(kubeconfig: Path | None):  # -> KubeCluster
    from kubernetes.config import ConfigException

    from flexvol.provisioning.kube import KubeCluster, api_client

    try:
        return KubeCluster(api_client(str(kubeconfig) if kubeconfig else None))
    except (ConfigException, OSError) as error:
        raise _fail(f"cannot load the Kubernetes configuration: {error}") from None


@app.command()
def provisioner(
    kubeconfig: Kubeconfig = None,
    name: Name = names.PROVISIONER_NAME,
    namespace: Annotated[str, typer.Option(envvar="POD_NAMESPACE",
                                           help="Namespace of the leader-election Lease.")] = "kube-system",
    lease: Annotated[str, typer.Option(help="Name of the leader-election Lease.")] = LEASE,
    identity: Annotated[str, typer.Option(envvar="POD_NAME",
                                          help="This replica's name in the Lease.")] = socket.gethostname(),
    watch_seconds: Annotated[int, typer.Option(min=1, max=9, help="Seconds per watch between "
                                               "lease renewals (the lease lasts 15).")] = 5,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Create a PersistentVolume on a node with room for every claim of a flexvol StorageClass."""
    from flexvol.provisioning.cluster import EventRecorder
    from flexvol.provisioning.leader import LeaderElector
    from flexvol.provisioning.provisioner import Provisioner

    _logging(verbose)
    cluster = _cluster(kubeconfig)
    elector = LeaderElector(cluster, namespace, lease, identity)
    recorder = EventRecorder(cluster, "flexvol-provisioner", identity)
    logging.getLogger("flexvol.provisioning").info("provisioner %s starting as %s", name, identity)
    Provisioner(cluster, recorder, name=name).run(elector, _stop_on_signals(), watch_seconds)


@app.command()
def agent(
    kubeconfig: Kubeconfig = None,
    node: Annotated[str, typer.Option(envvar="NODE_NAME", help="This node's name.")] = "",
    name: Name = names.PROVISIONER_NAME,
    root: RootOption = DEFAULT_ROOT,
    kubelet_root: KubeletRootOption = DEFAULT_KUBELET,
    plugin_dir: Annotated[str, typer.Option(help="The kubelet's FlexVolume plugin dir.")] = PLUGIN_DIR,
    lib_dir: Annotated[str, typer.Option(help="Host dir the driver's package is copied to.")] = LIB_DIR,
    host_python: Annotated[str, typer.Option(help="The host python3 that runs the driver.")] = HOST_PYTHON,
    attach: Annotated[bool, typer.Option("--attach", help="Install the attachable driver.")] = False,
    install: Annotated[bool, typer.Option(help="Install the driver before the node loop.")] = True,
    install_only: Annotated[bool, typer.Option("--install-only",
                                               help="Install the driver, then exit.")] = False,
    capacity: Annotated[str, typer.Option(help="Cap the published pool capacity, e.g. 100Gi.")] = "",
    metrics_port: Annotated[int, typer.Option(help="Serve Prometheus metrics on this port (0: off).")] = 0,
    metrics_address: Annotated[str, typer.Option(
        help="Address to serve metrics on. The metrics name every volume and are served without "
             "authentication: keep the default (loopback) unless something in front (e.g. "
             "kube-rbac-proxy) authenticates the scraper.")] = METRICS_ADDRESS,
    repair_apply: Annotated[bool, typer.Option("--repair-apply", help="At start, carry out what "
                                               "'flexvol repair --apply' would; else only report.")] = False,
    watch_seconds: Annotated[int, typer.Option(min=1, help="Seconds between capacity updates.")] = 30,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Install the driver; publish this node's capacity, reclaim its volumes, serve metrics."""
    from flexvol.provisioning.install import install_driver

    _logging(verbose)
    log = logging.getLogger("flexvol.provisioning")
    config = flexvol_config.Config(root, attach)
    try:
        limit = parse_quantity(capacity, "--capacity") if capacity else None
        if install or install_only:
            path, changed = install_driver(plugin_dir, lib_dir, config.data_root, attach=attach,
                                           python=host_python)
            log.info("driver %s %s", path, "installed" if changed else "already up to date")
    except (FlexvolError, OSError) as error:
        raise _fail(str(error)) from None
    if install_only:
        return
    if not node:
        raise _fail("--node (or NODE_NAME) is required")
    from flexvol.provisioning.agent import Agent, repair_check
    from flexvol.provisioning.cluster import EventRecorder

    cluster = _cluster(kubeconfig)
    if metrics_port:
        from prometheus_client import start_http_server

        from flexvol.provisioning.metrics import registry_for

        start_http_server(metrics_port, addr=metrics_address, registry=registry_for(config))
        log.info("metrics on http://%s:%d/metrics", metrics_address, metrics_port)
    recorder = EventRecorder(cluster, "flexvol-agent", node)
    Agent(cluster, config, node, recorder, provisioner=name, capacity_limit=limit,
          repair_check=repair_check(kubelet_root, repair_apply)).run(_stop_on_signals(), watch_seconds)
