"""`flexvol csi` as the kubelet and the external-provisioner drive it, on real loop devices:
the plugin runs as its own process on a temp socket and data root, a grpc client calls it."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from flexvol.core import kernel, state
from flexvol.core.config import Config
from flexvol.csi.proto import csi_pb2
from tests.helpers.csi import Client, Mode, block_capability, mount_capability, status_of
from tests.helpers.driver import Driver, options

Code = grpc.StatusCode
FLEXVOL = Path(sys.executable).parent / "flexvol"
NODE = "node-a"
MiB = 1 << 20


class Plugin:
    """One `flexvol csi` process on the driver fixture's data root; stopped by `stop`."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.socket = driver.base / "csi.sock"
        self.endpoint = f"unix://{self.socket}"
        self.process: subprocess.Popen | None = None
        self.client: Client | None = None
        self.log = driver.base / "csi.log"
        self.env: dict[str, str] = {}

    def start(self) -> Client:
        env = {**os.environ, "FLEXVOL_ROOT": str(self.driver.root), **self.env}
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [str(FLEXVOL), "csi", "--endpoint", self.endpoint, "--node-id", NODE, "-v"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
        self.client = Client(self.endpoint)
        try:
            self.client.wait_ready()
        except grpc.FutureTimeoutError:
            raise AssertionError(f"flexvol csi did not come up: {self.log.read_text()}") from None
        return self.client

    def stop(self) -> int | None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        code, self.process = self.process.returncode, None
        return code


@pytest.fixture
def plugin(driver: Driver) -> Iterator[Plugin]:
    # Stopped before the driver fixture's cleanup unmounts and detaches what is left.
    plugin = Plugin(driver)
    try:
        yield plugin
    finally:
        plugin.stop()


@pytest.fixture
def csi(plugin: Plugin) -> Client:
    return plugin.start()


def capability_for(block: bool, mode: int = Mode.SINGLE_NODE_WRITER) -> csi_pb2.VolumeCapability:
    if block:
        capability = block_capability()
        capability.access_mode.mode = mode
        return capability
    return mount_capability(mode)


def create(client: Client, name: str, size: int = 64 * MiB, *, block: bool = False,
           **parameters: str) -> csi_pb2.Volume:
    parameters.setdefault("allocation", "thin")
    return client.controller.CreateVolume(csi_pb2.CreateVolumeRequest(
        name=name, capacity_range=csi_pb2.CapacityRange(required_bytes=size),
        volume_capabilities=[capability_for(block)], parameters=parameters), timeout=120).volume


def stage_request(volume_id: str, staging: str, *, block: bool = False,
                  mode: int = Mode.SINGLE_NODE_WRITER) -> csi_pb2.NodeStageVolumeRequest:
    return csi_pb2.NodeStageVolumeRequest(volume_id=volume_id, staging_target_path=staging,
                                          volume_capability=capability_for(block, mode))


def publish_request(volume_id: str, staging: str, target: str, *, readonly: bool = False,
                    mode: int = Mode.SINGLE_NODE_WRITER,
                    block: bool = False) -> csi_pb2.NodePublishVolumeRequest:
    return csi_pb2.NodePublishVolumeRequest(volume_id=volume_id, staging_target_path=staging,
                                            target_path=target, readonly=readonly,
                                            volume_capability=capability_for(block, mode))


def stage(client: Client, volume_id: str, staging: str, **kwargs: object) -> None:
    client.node.NodeStageVolume(stage_request(volume_id, staging, **kwargs),  # type: ignore[arg-type]
                                timeout=120)


def publish(client: Client, volume_id: str, staging: str, target: str, **kwargs: object) -> None:
    client.node.NodePublishVolume(publish_request(volume_id, staging, target, **kwargs),  # type: ignore[arg-type]
                                  timeout=120)


def unpublish(client: Client, volume_id: str, target: str) -> None:
    client.node.NodeUnpublishVolume(csi_pb2.NodeUnpublishVolumeRequest(volume_id=volume_id,
                                                                       target_path=target), timeout=120)


def unstage(client: Client, volume_id: str, staging: str) -> None:
    client.node.NodeUnstageVolume(csi_pb2.NodeUnstageVolumeRequest(volume_id=volume_id,
                                                                   staging_target_path=staging), timeout=120)


def delete(client: Client, volume_id: str) -> None:
    client.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume_id), timeout=120)


def mounted(path: str) -> list[kernel.Mount]:
    return kernel.mounts_at(path)


def test_lifecycle_keeps_data_across_restage(csi: Client, driver: Driver) -> None:
    """create -> stage -> publish -> write -> unpublish -> unstage -> stage again: the data is
    there, the volume was formatted once; then delete leaves no file, record, mount or loop."""
    volume = create(csi, "pvc-lifecycle")
    volume_id = volume.volume_id
    assert volume_id == "pvc-lifecycle" and volume.capacity_bytes == 64 * MiB
    record = driver.record(volume_id)
    assert record["csi_name"] == "pvc-lifecycle" and record["formatted"]["fs_type"] == "ext4"
    assert driver.loops() == [], "CreateVolume releases the loop device it formatted through"
    staging, target = driver.dir("staging"), driver.dir("pod/volume")

    stage(csi, volume_id, staging)
    stage(csi, volume_id, staging)  # idempotent
    here = mounted(staging)
    assert len(here) == 1 and kernel.loop_backing_file(here[0].source) == str(driver.backing_file(volume_id))
    publish(csi, volume_id, staging, target)
    publish(csi, volume_id, staging, target)  # idempotent
    assert mounted(target)[-1].source == here[0].source and not mounted(target)[-1].read_only
    Path(target, "data.txt").write_text("kept")

    unpublish(csi, volume_id, target)
    assert not mounted(target) and not os.path.exists(target), "the target dir is removed"
    unpublish(csi, volume_id, target)  # idempotent
    unstage(csi, volume_id, staging)
    unstage(csi, volume_id, staging)  # idempotent
    assert not mounted(staging) and driver.loops() == []

    stage(csi, volume_id, staging)
    publish(csi, volume_id, staging, target)
    assert Path(target, "data.txt").read_text() == "kept"
    assert driver.record(volume_id)["formatted"]["uuid"] == record["formatted"]["uuid"]
    unpublish(csi, volume_id, target)
    unstage(csi, volume_id, staging)

    delete(csi, volume_id)
    delete(csi, volume_id)  # idempotent
    assert not driver.backing_file(volume_id).exists()
    assert not (driver.root / "records" / f"{volume_id}.json").exists()
    assert driver.loops() == [] and driver.mounts() == []


def test_read_only_publish_refuses_writes(csi: Client, driver: Driver) -> None:
    """readonly=true (or a read-only access mode) gives a read-only bind of a read-write stage."""
    volume_id = create(csi, "pvc-ro").volume_id
    staging, target, reader = driver.dir("staging"), driver.dir("rw"), driver.dir("ro")
    stage(csi, volume_id, staging)
    publish(csi, volume_id, staging, target)
    Path(target, "file").write_text("x")
    publish(csi, volume_id, staging, reader, readonly=True)
    publish(csi, volume_id, staging, driver.dir("ro-mode"), mode=Mode.SINGLE_NODE_READER_ONLY)
    for path in (reader, driver.dir("ro-mode")):
        assert mounted(path)[-1].read_only
        assert "nosuid" in mounted(path)[-1].options and "nodev" in mounted(path)[-1].options
        assert Path(path, "file").read_text() == "x"
        with pytest.raises(OSError) as caught:
            Path(path, "new").write_text("y")
        assert caught.value.errno == errno.EROFS
    assert status_of(csi.node.NodePublishVolume, publish_request(volume_id, staging, reader)) == \
        Code.ALREADY_EXISTS, "a read-write publish over a read-only one is incompatible"
    for path in (target, reader, driver.dir("ro-mode")):
        unpublish(csi, volume_id, path)
    unstage(csi, volume_id, staging)
    assert driver.mounts() == [] and driver.loops() == []


def test_error_cases_over_the_wire(csi: Client, driver: Driver) -> None:
    """The status codes the spec names, from the running plugin."""
    volume_id = create(csi, "pvc-errors").volume_id
    staging, target = driver.dir("staging"), driver.dir("target")
    node, controller = csi.node, csi.controller
    assert status_of(node.NodePublishVolume, publish_request(volume_id, staging, target)) == \
        Code.FAILED_PRECONDITION, "publish before stage"
    assert status_of(node.NodeStageVolume, stage_request("pvc-unknown", staging)) == Code.NOT_FOUND
    stage(csi, volume_id, staging)
    assert status_of(controller.DeleteVolume, csi_pb2.DeleteVolumeRequest(volume_id=volume_id)) == \
        Code.FAILED_PRECONDITION, "delete while staged"
    assert driver.backing_file(volume_id).exists()
    bigger = csi_pb2.CreateVolumeRequest(
        name="pvc-errors", capacity_range=csi_pb2.CapacityRange(required_bytes=128 * MiB),
        volume_capabilities=[mount_capability()], parameters={"allocation": "thin"})
    assert status_of(controller.CreateVolume, bigger) == Code.ALREADY_EXISTS
    other = create(csi, "pvc-other").volume_id
    assert status_of(node.NodeStageVolume, stage_request(other, staging)) == Code.FAILED_PRECONDITION, \
        "a staging path holding another volume"
    unstage(csi, volume_id, staging)
    delete(csi, volume_id)
    delete(csi, other)
    assert driver.mounts() == [] and driver.loops() == []


def test_a_locked_volume_answers_aborted(csi: Client, driver: Driver) -> None:
    """A call on a volume whose lock another call holds ends ABORTED quickly (the CO retries)."""
    volume_id = create(csi, "pvc-busy").volume_id
    staging = driver.dir("staging")
    with state.VolumeLock(Config(str(driver.root)), volume_id):
        assert status_of(csi.node.NodeStageVolume, stage_request(volume_id, staging)) == Code.ABORTED
    assert not mounted(staging)
    stage(csi, volume_id, staging)
    unstage(csi, volume_id, staging)
    delete(csi, volume_id)


def test_thick_volume_is_reserved_at_create(csi: Client, driver: Driver) -> None:
    """allocation=thick (the default) reserves every block when CreateVolume makes the volume."""
    volume_id = create(csi, "pvc-thick", 32 * MiB, allocation="thick", fsType="ext4").volume_id
    info = os.stat(driver.backing_file(volume_id))
    assert info.st_blocks * 512 >= info.st_size
    assert driver.record(volume_id)["allocation"] == "thick"
    delete(csi, volume_id)


def test_csi_never_deletes_a_flexvolume_volume(csi: Client, driver: Driver) -> None:
    """A volume the FlexVolume driver made is one volume: CSI refuses to delete it, and a
    CreateVolume of its name does not take it over."""
    target = driver.dir("flex")
    driver.ok("mount", target, options("data-1", allocation="thin"))
    driver.ok("unmount", target)
    assert status_of(csi.controller.DeleteVolume, csi_pb2.DeleteVolumeRequest(volume_id="data-1")) == \
        Code.FAILED_PRECONDITION
    request = csi_pb2.CreateVolumeRequest(name="data-1", volume_capabilities=[mount_capability()],
                                          capacity_range=csi_pb2.CapacityRange(required_bytes=64 * MiB),
                                          parameters={"allocation": "thin"})
    assert status_of(csi.controller.CreateVolume, request) == Code.ALREADY_EXISTS
    assert driver.backing_file("data-1").exists()


def test_restart_removes_the_stale_socket_and_serves_staged_volumes(plugin: Plugin, driver: Driver) -> None:
    """A plugin killed without cleanup leaves its socket; the next one removes it and serves
    the volumes the first one staged."""
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(plugin.socket))
    stale.close()
    client = plugin.start()
    volume_id = create(client, "pvc-restart").volume_id
    staging, target = driver.dir("staging"), driver.dir("target")
    stage(client, volume_id, staging)
    assert plugin.process is not None
    plugin.process.kill()
    plugin.process.wait(10)
    assert plugin.socket.exists(), "SIGKILL leaves the socket"
    plugin.stop()
    client = plugin.start()
    publish(client, volume_id, staging, target)
    unpublish(client, volume_id, target)
    unstage(client, volume_id, staging)
    delete(client, volume_id)
    assert plugin.stop() == 0
    assert not plugin.socket.exists(), "SIGTERM removes the socket"


def test_concurrent_calls_on_one_volume_are_serialised_or_aborted(csi: Client, driver: Driver) -> None:
    """Parallel CreateVolume of one name, then parallel NodeStageVolume of it, each end OK or
    ABORTED: one volume, formatted once, mounted once at the staging path."""
    from concurrent.futures import ThreadPoolExecutor

    request = csi_pb2.CreateVolumeRequest(
        name="pvc-race", capacity_range=csi_pb2.CapacityRange(required_bytes=64 * MiB),
        volume_capabilities=[mount_capability()], parameters={"allocation": "thin"})
    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(lambda _: status_of(csi.controller.CreateVolume, request), range(4)))
    assert set(codes) <= {Code.OK, Code.ABORTED} and Code.OK in codes, codes
    if Code.ABORTED in codes:
        assert status_of(csi.controller.CreateVolume, request) == Code.OK  # the CO's retry
    record = driver.record("pvc-race")
    staging = driver.dir("staging")
    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(lambda _: status_of(csi.node.NodeStageVolume,
                                                  stage_request("pvc-race", staging)), range(4)))
    assert set(codes) <= {Code.OK, Code.ABORTED} and Code.OK in codes, codes
    assert len(mounted(staging)) == 1
    assert driver.record("pvc-race")["formatted"] == record["formatted"], "formatted once"
    assert len(driver.loops()) == 1
    unstage(csi, "pvc-race", staging)
    delete(csi, "pvc-race")
    assert driver.mounts() == [] and driver.loops() == []


def stats(client: Client, volume_id: str, path: str) -> csi_pb2.NodeGetVolumeStatsResponse:
    return client.node.NodeGetVolumeStats(csi_pb2.NodeGetVolumeStatsRequest(volume_id=volume_id,
                                                                            volume_path=path), timeout=60)


def test_volume_stats_report_usage_and_an_abnormal_condition(csi: Client, driver: Driver) -> None:
    """Bytes and inodes as statvfs sees them; the condition turns abnormal, with the reason,
    when the backing file is truncated or deleted under the mounted volume."""
    volume_id = create(csi, "pvc-stats").volume_id
    staging, target = driver.dir("staging"), driver.dir("target")
    stage(csi, volume_id, staging)
    publish(csi, volume_id, staging, target)
    Path(target, "blob").write_bytes(os.urandom(4 * MiB))
    os.sync()
    reply = stats(csi, volume_id, target)
    usage = {item.unit: item for item in reply.usage}
    found = os.statvfs(target)
    in_bytes = usage[csi_pb2.VolumeUsage.BYTES]
    assert in_bytes.total == found.f_blocks * found.f_frsize
    assert in_bytes.used >= 4 * MiB and in_bytes.available > 0
    assert usage[csi_pb2.VolumeUsage.INODES].total == found.f_files
    assert not reply.volume_condition.abnormal
    assert status_of(csi.node.NodeGetVolumeStats, csi_pb2.NodeGetVolumeStatsRequest(
        volume_id=volume_id, volume_path=driver.dir("elsewhere"))) == Code.NOT_FOUND

    backing = driver.backing_file(volume_id)
    size = backing.stat().st_size
    os.truncate(backing, size - MiB)
    reply = stats(csi, volume_id, target)
    assert reply.volume_condition.abnormal and "truncated" in reply.volume_condition.message
    os.truncate(backing, size)
    assert not stats(csi, volume_id, target).volume_condition.abnormal

    # Deleted while attached: a second name keeps the inode, so the file can be linked back.
    kept = driver.base / "kept.img"
    os.link(backing, kept)
    backing.unlink()
    try:
        reply = stats(csi, volume_id, target)
        assert reply.volume_condition.abnormal and "gone" in reply.volume_condition.message
    finally:
        os.link(kept, backing)
        kept.unlink()
    unpublish(csi, volume_id, target)
    unstage(csi, volume_id, staging)
    delete(csi, volume_id)
    assert driver.mounts() == [] and driver.loops() == []


def test_create_killed_at_every_step_converges_on_retry(plugin: Plugin, driver: Driver) -> None:
    """A plugin SIGKILLed at any step of CreateVolume, restarted, and the CreateVolume retried
    (as the external-provisioner does) ends with the one volume, formatted, no loop device left.

    Guards two defects: a kill between the new record and the CSI name written into it left a
    record the retry refused as another volume's (ALREADY_EXISTS for ever); and a kill after
    formatting left the loop device attached, which the retry (finding the volume made) kept."""
    trace = driver.base / "trace"
    plugin.env = {"FLEXVOL_TEST_HOOKS": "1", "FLEXVOL_TEST_TRACE": str(trace)}
    create(plugin.start(), "pvc-probe")
    plugin.stop()
    steps = list(dict.fromkeys(trace.read_text().split()))
    assert "csi-record-saved" in steps and "loop-attached" in steps, steps
    delete(plugin.start(), "pvc-probe")
    plugin.stop()
    for number, step in enumerate(steps):
        name = f"pvc-kill-{number}"
        plugin.env = {"FLEXVOL_TEST_HOOKS": "1", "FLEXVOL_TEST_KILL_AT": step}
        client = plugin.start()
        request = csi_pb2.CreateVolumeRequest(
            name=name, capacity_range=csi_pb2.CapacityRange(required_bytes=64 * MiB),
            volume_capabilities=[mount_capability()], parameters={"allocation": "thin"})
        assert status_of(client.controller.CreateVolume, request) == Code.UNAVAILABLE, step
        assert plugin.process is not None and plugin.process.wait(10) == -signal.SIGKILL
        plugin.stop()
        plugin.env = {}
        client = plugin.start()
        assert status_of(client.controller.CreateVolume, request) == Code.OK, f"retry after a kill at {step}"
        record = driver.record(name)
        assert record["csi_name"] == name and record["formatted"]["fs_type"] == "ext4", step
        assert driver.loops() == [], f"a loop device left after a kill at {step}"
        staging = driver.dir(f"staging-{number}")
        stage(client, name, staging)
        unstage(client, name, staging)
        delete(client, name)
        assert not driver.backing_file(name).exists()
        plugin.stop()


# The kubelet names an inline volume csi-<sha256 of pod uid and volume name>: not a flexvol id.
INLINE_ID = "csi-" + "5e" * 32


def inline_request(volume_id: str, target: str, **attributes: str) -> csi_pb2.NodePublishVolumeRequest:
    context = {"csi.storage.k8s.io/ephemeral": "true", "csi.storage.k8s.io/pod.name": "web-0",
               "csi.storage.k8s.io/pod.namespace": "default", "size": "64Mi", "allocation": "thin",
               **attributes}
    return csi_pb2.NodePublishVolumeRequest(volume_id=volume_id, target_path=target,
                                            volume_capability=mount_capability(), volume_context=context)


def test_inline_volume_lives_and_dies_with_the_pod(csi: Client, driver: Driver) -> None:
    """NodePublishVolume of an inline volume makes, formats and mounts it at the target path;
    NodeUnpublishVolume unmounts and deletes it, and a retry of that unpublish succeeds."""
    target = driver.dir("pod/inline")
    csi.node.NodePublishVolume(inline_request(INLINE_ID, target), timeout=120)
    csi.node.NodePublishVolume(inline_request(INLINE_ID, target), timeout=120)  # idempotent
    [volume_id] = [name[:-len(".json")] for name in os.listdir(driver.root / "records")]
    record = driver.record(volume_id)
    assert record["csi_name"] == INLINE_ID and record["ephemeral"] is True
    assert record["formatted"]["fs_type"] == "ext4" and record["allocation"] == "thin"
    assert driver.backing_file(volume_id).stat().st_size == 64 * MiB
    here = mounted(target)
    assert len(here) == 1 and kernel.loop_backing_file(here[0].source) == str(driver.backing_file(volume_id))
    Path(target, "scratch").write_text("x")
    usage = stats(csi, INLINE_ID, target)
    assert usage.usage and not usage.volume_condition.abnormal
    assert status_of(csi.controller.DeleteVolume, csi_pb2.DeleteVolumeRequest(volume_id=volume_id)) == \
        Code.FAILED_PRECONDITION, "an inline volume in use is not deleted"
    unpublish(csi, INLINE_ID, target)
    assert not mounted(target) and not os.path.exists(target)
    assert not driver.backing_file(volume_id).exists() and not os.listdir(driver.root / "records")
    assert driver.loops() == []
    unpublish(csi, INLINE_ID, target)  # the kubelet's retry after a lost reply


def _node_calls(kind: str, client: Client, driver: Driver) -> None:
    """The call under test: stage, publish or delete of volume pvc-k (already set up); a
    "block-" kind is the same call on a raw block volume."""
    block = kind.startswith("block-")
    kind = kind.removeprefix("block-")
    if kind == "stage":
        stage(client, "pvc-k", driver.dir("staging"), block=block)
    elif kind == "publish":
        publish(client, "pvc-k", driver.dir("staging"), driver.dir("target"), block=block)
    elif kind == "unpublish":
        unpublish(client, "pvc-k", driver.dir("target"))
    elif kind == "unstage":
        unstage(client, "pvc-k", driver.dir("staging"))
    elif kind == "inline-publish":
        client.node.NodePublishVolume(inline_request(INLINE_ID, driver.dir("inline")), timeout=120)
    elif kind == "inline-unpublish":
        unpublish(client, INLINE_ID, driver.dir("inline"))
    else:
        delete(client, "pvc-k")


def _set_up(kind: str, client: Client, driver: Driver) -> None:
    if kind == "inline-publish":
        return
    if kind == "inline-unpublish":
        client.node.NodePublishVolume(inline_request(INLINE_ID, driver.dir("inline")), timeout=120)
        return
    block = kind.startswith("block-")
    kind = kind.removeprefix("block-")
    create(client, "pvc-k", block=block)
    # The CO makes the staging dir (and a target's parent); the plugin makes the rest.
    os.makedirs(driver.dir("staging"), exist_ok=True)
    if kind in ("publish", "unpublish", "unstage"):
        stage(client, "pvc-k", driver.dir("staging"), block=block)
    if kind == "unpublish":
        publish(client, "pvc-k", driver.dir("staging"), driver.dir("target"), block=block)


def _check_and_undo(kind: str, client: Client, driver: Driver, step: str) -> None:
    """After the retry: exactly the state the call promises, then back to nothing."""
    block = kind.startswith("block-")
    kind = kind.removeprefix("block-")
    staging, target = driver.dir("staging"), driver.dir("target")
    # A raw block volume is staged on a file named for it in the staging dir.
    staged_at = os.path.join(staging, "pvc-k") if block else staging
    if kind == "inline-publish":
        assert len(mounted(driver.dir("inline"))) == 1 and len(driver.loops()) == 1, step
        unpublish(client, INLINE_ID, driver.dir("inline"))
    if kind.startswith("inline"):
        assert not os.listdir(driver.root / "volumes") and not os.listdir(driver.root / "records"), step
        assert not mounted(driver.dir("inline")) and driver.loops() == [], step
        return
    if kind == "delete":
        assert not driver.backing_file("pvc-k").exists(), step
        assert not (driver.root / "records" / "pvc-k.json").exists(), step
        return
    if kind == "unstage":
        assert not mounted(staged_at) and driver.loops() == [], f"unstage after a kill at {step}"
        assert not os.path.lexists(os.path.join(staging, "pvc-k")), f"staging file left after {step}"
        delete(client, "pvc-k")
        return
    if kind == "unpublish":
        assert not mounted(target) and not os.path.lexists(target), f"unpublish after a kill at {step}"
        assert len(mounted(staged_at)) == 1, step
        unstage(client, "pvc-k", staging)
        delete(client, "pvc-k")
        return
    assert len(mounted(staged_at)) == 1, f"{kind} after a kill at {step}: {mounted(staged_at)}"
    if kind == "publish":
        assert len(mounted(target)) == 1, step
        device = kernel.device_of_mount(mounted(staged_at)[0])
        assert kernel.device_of_mount(mounted(target)[0]) == device, step
        unpublish(client, "pvc-k", target)
    assert len(driver.loops()) == 1, f"{kind} after a kill at {step}: {driver.loops()}"
    if block:
        assert driver.record("pvc-k")["formatted"] is None, f"a raw block volume formatted after {step}"
    unstage(client, "pvc-k", staging)
    delete(client, "pvc-k")


@pytest.mark.parametrize("kind", ["stage", "publish", "unpublish", "unstage", "delete",
                                  "inline-publish", "inline-unpublish", "block-stage", "block-publish",
                                  "block-unpublish", "block-unstage"])
def test_calls_killed_at_every_step_converge_on_retry(plugin: Plugin, driver: Driver, kind: str) -> None:
    """A plugin SIGKILLed at any step of NodeStageVolume, NodePublishVolume (filesystem or raw
    block), their inverses or DeleteVolume, restarted and retried (as the kubelet and the
    provisioner do) ends in the state the call promises (one mount and loop device, none, or
    the volume gone); nothing leaked."""
    trace = driver.base / "trace"
    client = plugin.start()
    _set_up(kind, client, driver)
    plugin.stop()
    plugin.env = {"FLEXVOL_TEST_HOOKS": "1", "FLEXVOL_TEST_TRACE": str(trace)}
    client = plugin.start()
    _node_calls(kind, client, driver)
    plugin.stop()
    steps = list(dict.fromkeys(trace.read_text().split()))
    assert steps, "the call reached no step"
    plugin.env = {}
    _check_and_undo(kind, plugin.start(), driver, "no kill")
    plugin.stop()
    for step in steps:
        plugin.env = {}
        _set_up(kind, plugin.start(), driver)
        plugin.stop()
        plugin.env = {"FLEXVOL_TEST_HOOKS": "1", "FLEXVOL_TEST_KILL_AT": step}
        client = plugin.start()
        with pytest.raises(grpc.RpcError) as caught:
            _node_calls(kind, client, driver)
        assert caught.value.code() == Code.UNAVAILABLE, step  # type: ignore[attr-defined]
        assert plugin.process is not None and plugin.process.wait(10) == -signal.SIGKILL
        plugin.stop()
        plugin.env = {}
        client = plugin.start()
        _node_calls(kind, client, driver)
        _check_and_undo(kind, client, driver, step)
        assert driver.mounts() == [] and driver.loops() == [], f"leaked after a kill at {step}"
        plugin.stop()
