"""CSI volume expansion, volume_mount_group and the namespace check on real loop devices and
mounts: ControllerExpandVolume and NodeExpandVolume as the external-resizer and the kubelet call
them, over the wire of a running `flexvol csi`."""

from __future__ import annotations

import hashlib
import os
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from flexvol.core import kernel, ownership
from flexvol.core.config import Config
from flexvol.csi.proto import csi_pb2
from tests.helpers.csi import Client, mount_capability, status_of
from tests.helpers.driver import Driver
from tests.integration.test_csi_lifecycle import (
    Plugin,
    create,
    delete,
    mounted,
    publish_request,
    stage_request,
    unpublish,
    unstage,
)

Code = grpc.StatusCode
MiB = 1 << 20
CAP_SYS_RESOURCE = 24
NO_CAP_SYS_RESOURCE = ("this machine lacks CAP_SYS_RESOURCE: online growth of a mounted ext4 fails "
                       "with \"Permission denied\" here, though it works on a real node")


def has_cap_sys_resource() -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> CAP_SYS_RESOURCE & 1)
    return False


@pytest.fixture
def plugin(driver: Driver) -> Iterator[Plugin]:
    plugin = Plugin(driver)
    try:
        yield plugin
    finally:
        plugin.stop()


@pytest.fixture
def csi(plugin: Plugin) -> Client:
    return plugin.start()


def controller_expand(client: Client, volume_id: str, size: int, limit: int = 0
                      ) -> csi_pb2.ControllerExpandVolumeResponse:
    return client.controller.ControllerExpandVolume(expand_request(volume_id, size, limit), timeout=120)


def expand_request(volume_id: str, size: int, limit: int = 0) -> csi_pb2.ControllerExpandVolumeRequest:
    return csi_pb2.ControllerExpandVolumeRequest(
        volume_id=volume_id, capacity_range=csi_pb2.CapacityRange(required_bytes=size, limit_bytes=limit),
        volume_capability=mount_capability())


def node_request(volume_id: str, path: str, size: int = 0,
                 staging: str = "") -> csi_pb2.NodeExpandVolumeRequest:
    request = csi_pb2.NodeExpandVolumeRequest(volume_id=volume_id, volume_path=path,
                                              staging_target_path=staging)
    if size:
        request.capacity_range.required_bytes = size
    return request


def node_expand(client: Client, volume_id: str, path: str, size: int = 0) -> csi_pb2.NodeExpandVolumeResponse:
    return client.node.NodeExpandVolume(node_request(volume_id, path, size), timeout=300)


def stage(client: Client, volume_id: str, staging: str, group: str = "") -> None:
    request = stage_request(volume_id, staging)
    request.volume_capability.mount.volume_mount_group = group
    client.node.NodeStageVolume(request, timeout=120)


def publish(client: Client, volume_id: str, staging: str, target: str, *, group: str = "",
            namespace: str = "", readonly: bool = False) -> None:
    request = _publish(volume_id, staging, target, group, namespace, readonly)
    client.node.NodePublishVolume(request, timeout=120)


def _publish(volume_id: str, staging: str, target: str, group: str = "", namespace: str = "",
             readonly: bool = False) -> csi_pb2.NodePublishVolumeRequest:
    request = publish_request(volume_id, staging, target, readonly=readonly)
    request.volume_capability.mount.volume_mount_group = group
    if namespace:
        request.volume_context["csi.storage.k8s.io/pod.namespace"] = namespace
        request.volume_context["csi.storage.k8s.io/pod.name"] = "web-0"
    return request


def fs_bytes(path: str) -> int:
    found = os.statvfs(path)
    return found.f_blocks * found.f_frsize


def write_blob(path: str, size: int = 8 * MiB) -> str:
    data = os.urandom(size)
    Path(path, "blob").write_bytes(data)
    os.sync()
    return hashlib.sha256(data).hexdigest()


def blob_hash(path: str) -> str:
    return hashlib.sha256(Path(path, "blob").read_bytes()).hexdigest()


def loop_bytes(driver: Driver, volume_id: str) -> int:
    [device] = kernel.loops_of_file(str(driver.backing_file(volume_id)))
    return kernel.block_size_bytes(device) or 0


def finish(client: Client, driver: Driver, volume_id: str, staging: str, *targets: str) -> None:
    for target in targets:
        unpublish(client, volume_id, target)
    unstage(client, volume_id, staging)
    delete(client, volume_id)
    assert driver.mounts() == [] and driver.loops() == []


# ---- online growth ---------------------------------------------------------------------------

@pytest.mark.parametrize(("fs_type", "size", "new"), [("xfs", 320 * MiB, 512 * MiB),
                                                      ("btrfs", 128 * MiB, 256 * MiB)])
def test_published_volume_grows_online_keeping_its_data(csi: Client, driver: Driver, fs_type: str,
                                                         size: int, new: int) -> None:
    """ControllerExpandVolume grows the file (node_expansion_required), NodeExpandVolume on the
    published path grows the loop device and the mounted filesystem: statvfs inside the mount
    sees the new bytes, the data written before is intact, repeats are no-ops."""
    volume_id = create(csi, f"pvc-grow-{fs_type}", size, fsType=fs_type).volume_id
    staging, target = driver.dir("staging"), driver.dir("pod/volume")
    stage(csi, volume_id, staging)
    publish(csi, volume_id, staging, target)
    digest = write_blob(target)
    before = fs_bytes(target)

    reply = controller_expand(csi, volume_id, new)
    assert reply.capacity_bytes == new and reply.node_expansion_required
    assert driver.backing_file(volume_id).stat().st_size == new
    assert driver.record(volume_id)["growing"]["to"] == new, "flagged until the filesystem catches up"
    assert fs_bytes(target) == before, "the filesystem grows on the node, not in the controller"

    assert node_expand(csi, volume_id, target, new).capacity_bytes == new
    assert loop_bytes(driver, volume_id) == new
    after = fs_bytes(target)
    assert after - before >= (new - size) * 9 // 10, (before, after)
    assert fs_bytes(staging) == after
    assert blob_hash(target) == digest
    record = driver.record(volume_id)
    assert record["size_bytes"] == new and "growing" not in record

    assert controller_expand(csi, volume_id, new).capacity_bytes == new  # idempotent
    assert node_expand(csi, volume_id, staging, new).capacity_bytes == new
    assert controller_expand(csi, volume_id, size).capacity_bytes == new, "never shrinks"
    assert fs_bytes(target) == after and driver.backing_file(volume_id).stat().st_size == new
    Path(target, "more").write_bytes(os.urandom(before // 2))  # room only the growth made
    finish(csi, driver, volume_id, staging, target)


def test_volume_grown_while_unstaged_is_finished_by_the_next_stage(csi: Client, driver: Driver) -> None:
    """ext4 grown by the controller while no node stages it: NodeStageVolume grows the
    filesystem offline before mounting it; NodeExpandVolume then has nothing left to do."""
    volume_id = create(csi, "pvc-offline", 64 * MiB).volume_id
    staging, target = driver.dir("staging"), driver.dir("target")
    stage(csi, volume_id, staging)
    digest = write_blob(staging)
    unstage(csi, volume_id, staging)
    reply = controller_expand(csi, volume_id, 128 * MiB)
    assert reply.capacity_bytes == 128 * MiB and reply.node_expansion_required
    assert driver.loops() == [], "the controller leaves no loop device behind"
    stage(csi, volume_id, staging)
    assert fs_bytes(staging) > 100 * MiB and blob_hash(staging) == digest
    assert "growing" not in driver.record(volume_id)
    publish(csi, volume_id, staging, target)
    assert node_expand(csi, volume_id, target, 128 * MiB).capacity_bytes == 128 * MiB
    finish(csi, driver, volume_id, staging, target)


@pytest.mark.skipif(not has_cap_sys_resource(), reason=NO_CAP_SYS_RESOURCE)
def test_mounted_ext4_grows_online(csi: Client, driver: Driver) -> None:
    volume_id = create(csi, "pvc-ext4-online", 64 * MiB).volume_id
    staging = driver.dir("staging")
    stage(csi, volume_id, staging)
    digest = write_blob(staging)
    controller_expand(csi, volume_id, 128 * MiB)
    node_expand(csi, volume_id, staging, 128 * MiB)
    assert fs_bytes(staging) > 100 * MiB and blob_hash(staging) == digest
    finish(csi, driver, volume_id, staging)


@pytest.mark.skipif(has_cap_sys_resource(), reason="only where online ext4 growth is denied")
def test_mounted_ext4_denied_online_growth_fails_clearly_and_stage_finishes_it(
        csi: Client, driver: Driver) -> None:
    """Where the kernel denies online ext4 growth (no CAP_SYS_RESOURCE), NodeExpandVolume fails
    with the cause and the way out, the volume stays flagged, and the next stage grows it."""
    volume_id = create(csi, "pvc-ext4-denied", 64 * MiB).volume_id
    staging = driver.dir("staging")
    stage(csi, volume_id, staging)
    digest = write_blob(staging)
    controller_expand(csi, volume_id, 128 * MiB)
    with pytest.raises(grpc.RpcError) as caught:
        node_expand(csi, volume_id, staging, 128 * MiB)
    details = caught.value.details()  # type: ignore[attr-defined]
    assert "Permission denied" in details and "CAP_SYS_RESOURCE" in details, details
    assert driver.record(volume_id)["growing"]["to"] == 128 * MiB
    unstage(csi, volume_id, staging)
    stage(csi, volume_id, staging)
    assert fs_bytes(staging) > 100 * MiB and blob_hash(staging) == digest
    assert "growing" not in driver.record(volume_id)
    finish(csi, driver, volume_id, staging)


def test_thick_volume_reserves_its_new_part(csi: Client, driver: Driver) -> None:
    volume_id = create(csi, "pvc-thick-grow", 64 * MiB, allocation="thick").volume_id
    controller_expand(csi, volume_id, 96 * MiB)
    info = driver.backing_file(volume_id).stat()
    assert info.st_size == 96 * MiB and info.st_blocks * 512 >= info.st_size
    delete(csi, volume_id)


def test_expansion_errors_carry_the_specs_codes(csi: Client, driver: Driver) -> None:
    volume_id = create(csi, "pvc-expand-errors", 64 * MiB).volume_id
    staging = driver.dir("staging")
    node = csi.node
    expand = csi.controller.ControllerExpandVolume
    assert status_of(expand, expand_request("pvc-nope", 128 * MiB)) == Code.NOT_FOUND
    assert status_of(expand, csi_pb2.ControllerExpandVolumeRequest(
        volume_id=volume_id)) == Code.INVALID_ARGUMENT, "no capacity range"
    assert status_of(expand, expand_request(volume_id, 128 * MiB, 96 * MiB)) == \
        Code.INVALID_ARGUMENT, "required above limit"
    assert status_of(expand, expand_request(volume_id, 80 * MiB + 1, 80 * MiB + 1)) == \
        Code.OUT_OF_RANGE, "no whole page fits"
    assert status_of(expand, expand_request(volume_id, 1 << 60)) == Code.OUT_OF_RANGE, \
        "larger than the whole pool"
    block = expand_request(volume_id, 128 * MiB)
    block.volume_capability.mount.fs_type = "vfat"
    assert status_of(expand, block) == Code.INVALID_ARGUMENT
    assert driver.backing_file(volume_id).stat().st_size == 64 * MiB, "nothing grew"

    # A budget that the volumes already fill: no room to grow.
    (driver.root / "overcommit").write_text("0.0000001\n")
    reply = status_of(expand, expand_request(volume_id, 128 * MiB))
    assert reply == Code.RESOURCE_EXHAUSTED
    (driver.root / "overcommit").unlink()

    assert status_of(node.NodeExpandVolume, node_request("pvc-nope", staging)) == Code.NOT_FOUND
    assert status_of(node.NodeExpandVolume, node_request(volume_id, "")) == Code.INVALID_ARGUMENT
    assert status_of(node.NodeExpandVolume, node_request(volume_id, staging)) == Code.NOT_FOUND, \
        "not staged there"
    assert driver.backing_file(volume_id).stat().st_size == 64 * MiB
    delete(csi, volume_id)


# ---- volume_mount_group (fsGroup) -------------------------------------------------------------

def test_volume_mount_group_owns_the_volume_root(csi: Client, driver: Driver) -> None:
    """NodeStage and NodePublish give the volume's root to volume_mount_group with setgid and
    group rwx, as the FlexVolume driver applies fsGroup; new files inherit the group; a
    read-only publish changes nothing; a group that is no number is refused."""
    volume_id = create(csi, "pvc-group", 64 * MiB).volume_id
    staging, target, reader = driver.dir("staging"), driver.dir("target"), driver.dir("reader")
    assert status_of(csi.node.NodeStageVolume, _stage_with(volume_id, staging, "staff")) == \
        Code.INVALID_ARGUMENT
    assert not mounted(staging)
    stage(csi, volume_id, staging, group="2345")
    info = os.stat(staging)
    assert info.st_gid == 2345 and info.st_mode & stat.S_ISGID and info.st_mode & stat.S_IRWXG == stat.S_IRWXG
    publish(csi, volume_id, staging, target, group="3456")
    info = os.stat(target)
    assert info.st_gid == 3456 and info.st_mode & stat.S_ISGID
    Path(target, "new").write_text("x")
    assert os.stat(Path(target, "new")).st_gid == 3456, "new files inherit the group"
    publish(csi, volume_id, staging, reader, group="4567", readonly=True)
    assert os.stat(reader).st_gid == 3456, "a read-only mount changes nothing"
    assert status_of(csi.node.NodePublishVolume, _publish(volume_id, staging, driver.dir("bad"), "-1")) == \
        Code.INVALID_ARGUMENT
    finish(csi, driver, volume_id, staging, target, reader)


def _stage_with(volume_id: str, staging: str, group: str) -> csi_pb2.NodeStageVolumeRequest:
    request = stage_request(volume_id, staging)
    request.volume_capability.mount.volume_mount_group = group
    return request


# ---- the namespace check ---------------------------------------------------------------------

def test_a_pod_of_another_namespace_is_refused(csi: Client, driver: Driver) -> None:
    """The first pod's namespace (podInfoOnMount) owns the volume; a pod of another namespace
    gets PERMISSION_DENIED naming the owner and the way out, and nothing is mounted for it, until
    an operator shares the volume."""
    volume_id = create(csi, "pvc-owned", 64 * MiB).volume_id
    staging, mine, theirs = driver.dir("staging"), driver.dir("pod-a/vol"), driver.dir("pod-b/vol")
    stage(csi, volume_id, staging)
    publish(csi, volume_id, staging, mine, namespace="team-a")
    assert driver.record(volume_id)["namespace"] == "team-a"
    publish(csi, volume_id, staging, mine, namespace="team-a")  # the kubelet's retry
    with pytest.raises(grpc.RpcError) as caught:
        publish(csi, volume_id, staging, theirs, namespace="team-b")
    assert caught.value.code() == Code.PERMISSION_DENIED  # type: ignore[attr-defined]
    details = caught.value.details()  # type: ignore[attr-defined]
    assert "team-a" in details and f"flexvol share {volume_id}" in details, details
    assert not mounted(theirs) and not os.path.exists(theirs)
    ownership.set_shareable(Config(str(driver.root)), volume_id, True)
    publish(csi, volume_id, staging, theirs, namespace="team-b")
    assert mounted(theirs)
    finish(csi, driver, volume_id, staging, mine, theirs)


# ---- a kill at every step --------------------------------------------------------------------

def _set_up(kind: str, client: Client, driver: Driver) -> None:
    # xfs: its online growth works on this machine (ext4's needs CAP_SYS_RESOURCE).
    create(client, "pvc-k", 320 * MiB, fsType="xfs", allocation="thick")
    if kind == "node-expand":
        stage(client, "pvc-k", driver.dir("staging"))
        publish(client, "pvc-k", driver.dir("staging"), driver.dir("target"))
        controller_expand(client, "pvc-k", 400 * MiB)


def _call(kind: str, client: Client, driver: Driver) -> None:
    if kind == "controller-expand":
        reply = controller_expand(client, "pvc-k", 400 * MiB)
        assert reply.capacity_bytes == 400 * MiB and reply.node_expansion_required
    else:
        assert node_expand(client, "pvc-k", driver.dir("target"), 400 * MiB).capacity_bytes == 400 * MiB


def _check_and_undo(kind: str, client: Client, driver: Driver, step: str) -> None:
    info = driver.backing_file("pvc-k").stat()
    assert info.st_size == 400 * MiB and info.st_blocks * 512 >= info.st_size, step
    record = driver.record("pvc-k")
    if kind == "controller-expand":
        assert record["growing"]["to"] == 400 * MiB and driver.loops() == [], step
        delete(client, "pvc-k")
        return
    assert record["size_bytes"] == 400 * MiB and "growing" not in record, step
    # (xfs keeps its log and metadata out of statvfs: a 400 MiB volume shows 336 MiB.)
    assert fs_bytes(driver.dir("target")) > 330 * MiB and loop_bytes(driver, "pvc-k") == 400 * MiB, step
    assert len(driver.loops()) == 1, step
    finish(client, driver, "pvc-k", driver.dir("staging"), driver.dir("target"))


@pytest.mark.parametrize("kind", ["controller-expand", "node-expand"])
def test_expansion_killed_at_every_step_converges_on_retry(plugin: Plugin, driver: Driver, kind: str) -> None:
    """A plugin SIGKILLed at any step of ControllerExpandVolume or NodeExpandVolume, restarted
    and retried (as the external-resizer and the kubelet do), ends grown: the file, a thick
    volume's reservation, the loop device and the filesystem; nothing leaked."""
    trace = driver.base / "trace"
    _set_up(kind, plugin.start(), driver)
    plugin.stop()
    plugin.env = {"FLEXVOL_TEST_HOOKS": "1", "FLEXVOL_TEST_TRACE": str(trace)}
    _call(kind, plugin.start(), driver)
    plugin.stop()
    steps = list(dict.fromkeys(trace.read_text().split()))
    wanted = {"controller-expand": {"file-grown", "blocks-reserved"},
              "node-expand": {"loop-capacity-set", "fs-grown"}}[kind]
    assert wanted <= set(steps), steps
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
            _call(kind, client, driver)
        assert caught.value.code() == Code.UNAVAILABLE, step  # type: ignore[attr-defined]
        assert plugin.process is not None and plugin.process.wait(10) == -signal.SIGKILL
        plugin.stop()
        plugin.env = {}
        client = plugin.start()
        _call(kind, client, driver)
        _check_and_undo(kind, client, driver, step)
        assert driver.mounts() == [] and driver.loops() == [], f"leaked after a kill at {step}"
        plugin.stop()
