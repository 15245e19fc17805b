"""Registration with the kubelet, without the node-driver-registrar sidecar.

The kubelet watches <kubelet root>/plugins_registry for sockets; on one it calls GetInfo, learns
the CSI driver's name and socket, registers it, and says so with NotifyRegistrationStatus.
Removing the socket deregisters the plugin. When the standard registrar runs beside the plugin,
leave --registration-dir unset: the registrar owns that socket.
"""

from __future__ import annotations

import logging
import os

from flexvol.csi import names
from flexvol.csi.proto import registration_pb2, registration_pb2_grpc
from flexvol.csi.status import rpc

log = logging.getLogger("flexvol.csi")

PLUGIN_TYPE = "CSIPlugin"
# The CSI versions the kubelet accepts from a registering plugin.
SUPPORTED_VERSIONS = ("1.0.0",)


def socket_path(registration_dir: str) -> str:
    """<dir>/<driver name>-reg.sock, the name the standard registrar uses."""
    return os.path.join(registration_dir, f"{names.DRIVER_NAME}-reg.sock")


class Registration(registration_pb2_grpc.RegistrationServicer):
    def __init__(self, endpoint_path: str) -> None:
        self.endpoint_path = endpoint_path
        self.registered: bool | None = None

    @rpc
    def GetInfo(self, request: registration_pb2.InfoRequest, context: object) -> registration_pb2.PluginInfo:
        return registration_pb2.PluginInfo(type=PLUGIN_TYPE, name=names.DRIVER_NAME,
                                           endpoint=self.endpoint_path,
                                           supported_versions=list(SUPPORTED_VERSIONS))

    @rpc
    def NotifyRegistrationStatus(self, request: registration_pb2.RegistrationStatus,
                                 context: object) -> registration_pb2.RegistrationStatusResponse:
        self.registered = request.plugin_registered
        if request.plugin_registered:
            log.info("the kubelet registered %s (socket %s)", names.DRIVER_NAME, self.endpoint_path)
        else:
            log.error("the kubelet refused to register %s: %s", names.DRIVER_NAME, request.error)
        return registration_pb2.RegistrationStatusResponse()
