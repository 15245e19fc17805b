"""Helpers for the CSI tests: capabilities, a fake servicer context, a client of a socket."""

from __future__ import annotations

import grpc

from flexvol.csi.proto import csi_pb2, csi_pb2_grpc

Mode = csi_pb2.VolumeCapability.AccessMode
# The node id the unit tests' services run as.
NODE = "node-a"


def mount_capability(mode: int = Mode.SINGLE_NODE_WRITER, fs_type: str = "",
                     flags: tuple[str, ...] = ()) -> csi_pb2.VolumeCapability:
    return csi_pb2.VolumeCapability(
        mount=csi_pb2.VolumeCapability.MountVolume(fs_type=fs_type, mount_flags=list(flags)),
        access_mode=Mode(mode=mode))


def block_capability() -> csi_pb2.VolumeCapability:
    return csi_pb2.VolumeCapability(block=csi_pb2.VolumeCapability.BlockVolume(),
                                    access_mode=Mode(mode=Mode.SINGLE_NODE_WRITER))


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


class FakeContext:
    """What a servicer method gets from grpc, enough for `abort`: it raises, as grpc's does."""

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)


class Client:
    """Stubs of the three services on one channel."""

    def __init__(self, endpoint: str) -> None:
        self.channel = grpc.insecure_channel(endpoint)
        self.identity = csi_pb2_grpc.IdentityStub(self.channel)
        self.controller = csi_pb2_grpc.ControllerStub(self.channel)
        self.node = csi_pb2_grpc.NodeStub(self.channel)

    def wait_ready(self, timeout: float = 20) -> None:
        grpc.channel_ready_future(self.channel).result(timeout=timeout)

    def close(self) -> None:
        self.channel.close()


def status_of(call: object, *args: object) -> grpc.StatusCode:
    """The status code a client call ends with (OK if it returns)."""
    try:
        call(*args, timeout=60)  # type: ignore[operator]
    except grpc.RpcError as error:
        return error.code()  # type: ignore[attr-defined]
    return grpc.StatusCode.OK


def code(call: object, request: object) -> grpc.StatusCode:
    """The status a servicer method answers `request` with (OK when it returns)."""
    try:
        call(request, FakeContext())  # type: ignore[operator]
    except Aborted as error:
        return error.code
    return grpc.StatusCode.OK
