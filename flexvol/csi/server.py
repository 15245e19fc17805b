"""`flexvol csi`: the three CSI services on one unix socket until SIGTERM or SIGINT."""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import stat
import threading
from concurrent import futures

import grpc

from flexvol.core import state
from flexvol.core.config import Config
from flexvol.core.errors import FlexvolError, InvalidInput
from flexvol.csi import registration
from flexvol.csi.identity import Identity
from flexvol.csi.node import Node
from flexvol.csi.proto import csi_pb2_grpc, registration_pb2_grpc
from flexvol.csi.snapshots import SnapshotController

log = logging.getLogger("flexvol.csi")

UNIX_SCHEME = "unix://"
STOP_GRACE_SECONDS = 10.0


def socket_path(endpoint: str) -> str:
    """The absolute path of a unix:///path endpoint (the form the kubelet and sidecars use)."""
    if endpoint.startswith(UNIX_SCHEME):
        path = endpoint[len(UNIX_SCHEME):]
    elif endpoint.startswith("unix:"):
        path = endpoint[len("unix:"):]
    else:
        raise InvalidInput(f"endpoint {endpoint[:200]!r} is not a unix socket",
                           "use unix:///path/to/csi.sock")
    if not path.startswith("/"):
        raise InvalidInput(f"endpoint {endpoint[:200]!r} names a relative path",
                           "use an absolute path: unix:///path/to/csi.sock")
    return path


def clear_stale_socket(path: str) -> None:
    """Remove a socket a previous plugin left behind; refuse a live one or any other file."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise FlexvolError(f"{path} exists and is not a socket; refusing to replace it",
                           "choose another --endpoint or remove the file")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError as error:
        if error.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise FlexvolError(f"cannot check socket {path}: {error.strerror}") from None
    else:
        raise FlexvolError(f"another process serves {path}", "stop it first, or choose another --endpoint")
    finally:
        probe.close()
    os.unlink(path)
    log.info("removed stale socket %s", path)


def build(config: Config, node_id: str, workers: int) -> grpc.Server:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="csi"))
    csi_pb2_grpc.add_IdentityServicer_to_server(Identity(), server)
    csi_pb2_grpc.add_ControllerServicer_to_server(SnapshotController(config, node_id), server)
    csi_pb2_grpc.add_NodeServicer_to_server(Node(config, node_id), server)
    return server


def listen(server: grpc.Server, path: str) -> None:
    os.makedirs(os.path.dirname(path), mode=0o750, exist_ok=True)
    clear_stale_socket(path)
    if server.add_insecure_port(f"{UNIX_SCHEME}{path}") == 0:
        raise FlexvolError(f"cannot listen on {path}")


def serve(config: Config, endpoint: str, node_id: str, *, workers: int = 4,
          registration_dir: str = "", ready: threading.Event | None = None,
          stop: threading.Event | None = None) -> None:
    """Serve until SIGTERM/SIGINT (or `stop` is set); the sockets are removed on the way out.

    With `registration_dir` (the kubelet's plugins_registry) the plugin also registers itself
    with the kubelet there (registration.py), after the CSI socket is up.
    """
    if not node_id:
        raise InvalidInput("the node id is empty", "pass --node-id (the Kubernetes node name)")
    path = socket_path(endpoint)
    state.ensure_dirs(config)
    server = build(config, node_id, workers)
    listen(server, path)
    sockets = [path]
    servers = [server]
    if registration_dir:
        registrar = grpc.server(futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="reg"))
        registration_pb2_grpc.add_RegistrationServicer_to_server(registration.Registration(path), registrar)
        reg_path = registration.socket_path(registration_dir)
        listen(registrar, reg_path)
        sockets.append(reg_path)
        servers.append(registrar)
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
    # The CSI socket first: the kubelet calls it as soon as it sees the registration socket.
    for each in servers:
        each.start()
    log.info("serving CSI on %s for node %s (data root %s)", path, node_id, config.data_root)
    if registration_dir:
        log.info("registering with the kubelet through %s", sockets[-1])
    if ready is not None:
        ready.set()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        # The registration socket first: its removal tells the kubelet the plugin is going.
        for each, each_path in reversed(list(zip(servers, sockets, strict=True))):
            each.stop(STOP_GRACE_SECONDS).wait()
            try:
                os.unlink(each_path)
            except OSError:
                pass
        log.info("stopped")
