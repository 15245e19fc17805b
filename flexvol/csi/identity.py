"""The CSI Identity service: who the plugin is and what it offers."""

from __future__ import annotations

from google.protobuf import wrappers_pb2

from flexvol import __version__
from flexvol.csi import names
from flexvol.csi.proto import csi_pb2, csi_pb2_grpc
from flexvol.csi.status import rpc

Service = csi_pb2.PluginCapability.Service
Expansion = csi_pb2.PluginCapability.VolumeExpansion


class Identity(csi_pb2_grpc.IdentityServicer):
    @rpc
    def GetPluginInfo(self, request: csi_pb2.GetPluginInfoRequest,
                      context: object) -> csi_pb2.GetPluginInfoResponse:
        return csi_pb2.GetPluginInfoResponse(name=names.DRIVER_NAME, vendor_version=__version__)

    @rpc
    def GetPluginCapabilities(self, request: csi_pb2.GetPluginCapabilitiesRequest,
                              context: object) -> csi_pb2.GetPluginCapabilitiesResponse:
        # VOLUME_ACCESSIBILITY_CONSTRAINTS: a volume is reachable from its own node only.
        # VolumeExpansion ONLINE: a staged or published volume grows in place.
        return csi_pb2.GetPluginCapabilitiesResponse(capabilities=[
            *(csi_pb2.PluginCapability(service=Service(type=kind))
              for kind in (Service.CONTROLLER_SERVICE, Service.VOLUME_ACCESSIBILITY_CONSTRAINTS)),
            csi_pb2.PluginCapability(volume_expansion=Expansion(type=Expansion.ONLINE))])

    @rpc
    def Probe(self, request: csi_pb2.ProbeRequest, context: object) -> csi_pb2.ProbeResponse:
        return csi_pb2.ProbeResponse(ready=wrappers_pb2.BoolValue(value=True))
