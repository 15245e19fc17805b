"""CSI Node service and the plugin's socket without root: validation, status codes, and one
in-process server answering over a real unix socket."""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from flexvol.core import state
from flexvol.core.config import Config
from flexvol.core.errors import FlexvolError, InvalidInput
from flexvol.csi import names, server
from flexvol.csi.node import Node
from flexvol.csi.proto import csi_pb2
from tests.helpers.csi import (
    NODE,
    Client,
    FakeContext,
    block_capability,
    code,
    mount_capability,
    status_of,
)

Code = grpc.StatusCode


@pytest.fixture
def service(config: Config) -> Node:
    return Node(config, NODE)


def stage(volume_id: str = "pvc-1", path: str = "/tmp/flexvol-never/stage",
          capability: csi_pb2.VolumeCapability | None = None) -> csi_pb2.NodeStageVolumeRequest:
    request = csi_pb2.NodeStageVolumeRequest(volume_id=volume_id, staging_target_path=path)
    if capability is not None:
        request.volume_capability.CopyFrom(capability)
    return request


def publish(volume_id: str = "pvc-1", target: str = "/tmp/flexvol-never/target",
            staging: str = "/tmp/flexvol-never/stage",
            capability: csi_pb2.VolumeCapability | None = None) -> csi_pb2.NodePublishVolumeRequest:
    request = csi_pb2.NodePublishVolumeRequest(volume_id=volume_id, target_path=target,
                                               staging_target_path=staging)
    if capability is not None:
        request.volume_capability.CopyFrom(capability)
    return request


@pytest.mark.parametrize(("request_", "why"), [
    (stage("", capability=mount_capability()), "no volume id"),
    (stage(path="", capability=mount_capability()), "no staging path"),
    (stage(), "no capability"),
])
def test_stage_refuses_bad_requests(service: Node, request_: object, why: str) -> None:
    assert code(service.NodeStageVolume, request_) == Code.INVALID_ARGUMENT, why


def test_stage_of_an_unknown_volume_is_not_found(service: Node) -> None:
    assert code(service.NodeStageVolume, stage("nope", capability=mount_capability())) == Code.NOT_FOUND


@pytest.mark.parametrize(("request_", "why"), [
    (publish("", capability=mount_capability()), "no volume id"),
    (publish(target="", capability=mount_capability()), "no target path"),
    (publish(), "no capability"),
])
def test_publish_refuses_bad_requests(service: Node, request_: object, why: str) -> None:
    assert code(service.NodePublishVolume, request_) == Code.INVALID_ARGUMENT, why


def test_publish_needs_the_staging_path(service: Node) -> None:
    assert code(service.NodePublishVolume, publish(staging="", capability=mount_capability())) == \
        Code.FAILED_PRECONDITION


def test_publish_of_an_unknown_volume_is_not_found(service: Node) -> None:
    assert code(service.NodePublishVolume, publish("nope", capability=mount_capability())) == Code.NOT_FOUND


def test_unstage_and_unpublish_status_codes(service: Node) -> None:
    unstage, unpublish = service.NodeUnstageVolume, service.NodeUnpublishVolume
    invalid = Code.INVALID_ARGUMENT
    assert code(unstage, csi_pb2.NodeUnstageVolumeRequest(staging_target_path="/tmp/x")) == invalid
    assert code(unstage, csi_pb2.NodeUnstageVolumeRequest(volume_id="pvc-1")) == invalid
    assert code(unpublish, csi_pb2.NodeUnpublishVolumeRequest(target_path="/tmp/x")) == invalid
    assert code(unpublish, csi_pb2.NodeUnpublishVolumeRequest(volume_id="pvc-1")) == invalid
    assert code(unstage, csi_pb2.NodeUnstageVolumeRequest(
        volume_id="nope", staging_target_path="/tmp/flexvol-never/stage")) == Code.NOT_FOUND
    # Unpublish of a volume that is gone succeeds: an inline volume is deleted by its unpublish,
    # whose retry must not fail.
    assert code(unpublish, csi_pb2.NodeUnpublishVolumeRequest(
        volume_id="nope", target_path="/tmp/flexvol-never/target")) == Code.OK


@pytest.mark.parametrize(("context", "why"), [
    ({"colour": "blue"}, "unknown attribute"),
    ({"size": "lots"}, "bad size"),
    ({"size": "100Mi", "fsType": "xfs"}, "below the filesystem's minimum"),
    ({"fsType": "ntfs"}, "unknown filesystem"),
    ({"allocation": "sparse"}, "bad allocation"),
])
def test_inline_volumes_refuse_bad_attributes(service: Node, config: Config, context: dict, why: str) -> None:
    request = publish("csi-" + "a" * 64, staging="", capability=mount_capability())
    request.volume_context.update({"csi.storage.k8s.io/ephemeral": "true",
                                   "csi.storage.k8s.io/pod.name": "web-0", **context})
    assert code(service.NodePublishVolume, request) == Code.INVALID_ARGUMENT, why
    assert not any(Path(config.volumes_dir).iterdir())


def test_inline_block_volumes_are_refused_with_a_reason(service: Node, config: Config) -> None:
    request = publish("csi-" + "a" * 64, staging="", capability=block_capability())
    request.volume_context.update({"csi.storage.k8s.io/ephemeral": "true"})
    with pytest.raises(Exception, match="block access type is not served") as caught:
        service.NodePublishVolume(request, FakeContext())
    assert caught.value.code == Code.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert not any(Path(config.volumes_dir).iterdir())


def test_block_volumes_need_a_volume_that_exists(service: Node) -> None:
    assert code(service.NodeStageVolume, stage("nope", capability=block_capability())) == Code.NOT_FOUND
    assert code(service.NodePublishVolume, publish("nope", capability=block_capability())) == Code.NOT_FOUND


def test_node_info_pins_volumes_to_the_node(service: Node) -> None:
    info = service.NodeGetInfo(csi_pb2.NodeGetInfoRequest(), FakeContext())
    assert info.node_id == NODE
    assert dict(info.accessible_topology.segments) == {names.TOPOLOGY_KEY: NODE}
    caps = service.NodeGetCapabilities(csi_pb2.NodeGetCapabilitiesRequest(), FakeContext())
    RPC = csi_pb2.NodeServiceCapability.RPC
    assert [cap.rpc.type for cap in caps.capabilities] == \
        [RPC.STAGE_UNSTAGE_VOLUME, RPC.GET_VOLUME_STATS, RPC.VOLUME_CONDITION, RPC.EXPAND_VOLUME,
         RPC.VOLUME_MOUNT_GROUP]


def test_volume_stats_status_codes(service: Node, config: Config) -> None:
    stats = service.NodeGetVolumeStats
    request = csi_pb2.NodeGetVolumeStatsRequest
    assert code(stats, request(volume_path="/tmp/x")) == Code.INVALID_ARGUMENT
    assert code(stats, request(volume_id="pvc-1")) == Code.INVALID_ARGUMENT
    assert code(stats, request(volume_id="nope", volume_path="/tmp")) == Code.NOT_FOUND
    state.save_record(config, state.new_record("pvc-1", 1 << 26, "ext4"))
    assert code(stats, request(volume_id="pvc-1", volume_path="/tmp/flexvol-never")) == Code.NOT_FOUND


# ---- the socket ----------------------------------------------------------------------------

@pytest.mark.parametrize(("endpoint", "path"), [
    ("unix:///run/csi/csi.sock", "/run/csi/csi.sock"), ("unix:/run/csi.sock", "/run/csi.sock")])
def test_endpoint_forms(endpoint: str, path: str) -> None:
    assert server.socket_path(endpoint) == path


@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1:10000", "unix://relative.sock", "/run/csi.sock"])
def test_endpoints_that_are_not_unix_sockets_are_refused(endpoint: str) -> None:
    with pytest.raises(InvalidInput):
        server.socket_path(endpoint)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # unix socket paths are limited to 107 bytes: pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="flexvol-csi-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_a_stale_socket_is_removed_a_live_one_refused(short_dir: Path) -> None:
    path = str(short_dir / "csi.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()
    server.clear_stale_socket(path)
    assert not Path(path).exists()
    live = socket.socket(socket.AF_UNIX)
    live.bind(path)
    live.listen()
    try:
        with pytest.raises(FlexvolError, match="another process serves"):
            server.clear_stale_socket(path)
    finally:
        live.close()
    Path(path).unlink()
    Path(path).write_text("not a socket")
    with pytest.raises(FlexvolError, match="not a socket"):
        server.clear_stale_socket(path)


def test_the_server_answers_on_its_socket_and_removes_it(short_dir: Path) -> None:
    path = short_dir / "csi.sock"
    config = Config(str(short_dir / "root"))
    ready, stop = threading.Event(), threading.Event()
    thread = threading.Thread(target=server.serve, args=(config, f"unix://{path}", NODE),
                              kwargs={"ready": ready, "stop": stop}, daemon=True)
    thread.start()
    client = Client(f"unix://{path}")
    try:
        assert ready.wait(20)
        client.wait_ready()
        assert client.identity.GetPluginInfo(csi_pb2.GetPluginInfoRequest()).name == names.DRIVER_NAME
        assert client.node.NodeGetInfo(csi_pb2.NodeGetInfoRequest()).node_id == NODE
        controller = client.controller
        assert status_of(controller.CreateVolume, csi_pb2.CreateVolumeRequest()) == Code.INVALID_ARGUMENT
        assert status_of(controller.DeleteVolume, csi_pb2.DeleteVolumeRequest(volume_id="gone")) == Code.OK
    finally:
        client.close()
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    assert not path.exists()


def test_the_plugin_registers_itself_with_the_kubelet(short_dir: Path) -> None:
    """With a registration dir, the kubelet's GetInfo on <dir>/loop.flexvol.io-reg.sock names the
    driver and its CSI socket; both sockets go when the plugin stops (the kubelet deregisters)."""
    from flexvol.csi.proto import registration_pb2, registration_pb2_grpc

    path = short_dir / "csi.sock"
    registry = short_dir / "plugins_registry"
    reg_socket = registry / "loop.flexvol.io-reg.sock"
    ready, stop = threading.Event(), threading.Event()
    config = Config(str(short_dir / "root"))
    thread = threading.Thread(target=server.serve, args=(config, f"unix://{path}", NODE),
                              kwargs={"ready": ready, "stop": stop, "registration_dir": str(registry)},
                              daemon=True)
    thread.start()
    channel = grpc.insecure_channel(f"unix://{reg_socket}")
    try:
        assert ready.wait(20)
        grpc.channel_ready_future(channel).result(timeout=20)
        kubelet = registration_pb2_grpc.RegistrationStub(channel)
        info = kubelet.GetInfo(registration_pb2.InfoRequest(), timeout=10)
        assert (info.type, info.name, info.endpoint) == ("CSIPlugin", names.DRIVER_NAME, str(path))
        assert list(info.supported_versions) == ["1.0.0"]
        kubelet.NotifyRegistrationStatus(registration_pb2.RegistrationStatus(plugin_registered=True),
                                         timeout=10)
    finally:
        channel.close()
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    assert not path.exists() and not reg_socket.exists()
