"""Raw block volumes through `flexvol csi` on real loop devices: the loop device itself is what a
pod gets, bound onto the target file; bytes written through it outlive unpublish, unstage and a
new stage; the device goes when nothing uses it, and never while something does."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from flexvol.core import kernel
from flexvol.csi.proto import csi_pb2
from tests.helpers.csi import Client, Mode, block_capability, mount_capability, status_of
from tests.helpers.driver import Driver, options
from tests.integration.test_csi_lifecycle import (
    INLINE_ID,
    MiB,
    Plugin,
    create,
    delete,
    inline_request,
    mounted,
    publish,
    publish_request,
    stage,
    stage_request,
    stats,
    unpublish,
    unstage,
)

Code = grpc.StatusCode


@pytest.fixture
def csi(driver: Driver) -> Iterator[Client]:
    """A `flexvol csi` process on the driver fixture's data root, stopped before its cleanup."""
    plugin = Plugin(driver)
    try:
        yield plugin.start()
    finally:
        plugin.stop()


def dirs(driver: Driver) -> tuple[str, str]:
    """The staging dir and the dir a target file goes in, made as the CO makes them."""
    staging, pods = driver.dir("staging"), driver.dir("pods")
    os.makedirs(staging)
    os.makedirs(pods)
    return staging, pods


def staged_file(staging: str, volume_id: str) -> str:
    return os.path.join(staging, volume_id)


def device_at(path: str) -> str:
    here = mounted(path)
    assert len(here) == 1, here
    return kernel.device_of_mount(here[0])


def write_at(path: str, offset: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        assert os.pwrite(fd, data, offset) == len(data)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_at(path: str, offset: int, size: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, size, offset)
    finally:
        os.close(fd)


def sysfs_bound(device: str) -> bool:
    return Path(f"/sys/block/{os.path.basename(device)}/loop/backing_file").exists()


def test_block_volume_keeps_its_bytes_across_unstage_and_restage(csi: Client, driver: Driver) -> None:
    """create -> stage -> publish -> write through the device -> unpublish -> unstage (the device
    gone in sysfs) -> stage -> publish -> the same bytes; never formatted."""
    volume = create(csi, "pvc-raw", block=True)
    volume_id = volume.volume_id
    assert volume.capacity_bytes == 64 * MiB and "fsType" not in volume.volume_context
    record = driver.record(volume_id)
    assert record["block"] is True and record["formatted"] is None and driver.loops() == []
    staging, pods = dirs(driver)
    target = os.path.join(pods, "dev")

    stage(csi, volume_id, staging, block=True)
    stage(csi, volume_id, staging, block=True)  # idempotent
    device = device_at(staged_file(staging, volume_id))
    assert kernel.loop_backing_file(device) == str(driver.backing_file(volume_id))
    publish(csi, volume_id, staging, target, block=True)
    publish(csi, volume_id, staging, target, block=True)  # idempotent
    assert device_at(target) == device and Path(target).is_block_device()
    assert os.stat(target).st_rdev == os.stat(device).st_rdev
    payload = os.urandom(MiB)
    write_at(target, 5 * MiB, payload)
    reply = stats(csi, volume_id, target)
    assert [(item.unit, item.total) for item in reply.usage] == [(csi_pb2.VolumeUsage.BYTES, 64 * MiB)]
    assert not reply.volume_condition.abnormal

    unpublish(csi, volume_id, target)
    assert not mounted(target) and not os.path.lexists(target), "the target file is removed"
    unpublish(csi, volume_id, target)  # idempotent
    assert sysfs_bound(device), "still staged"
    unstage(csi, volume_id, staging)
    assert not sysfs_bound(device) and driver.loops() == [], "unstage detaches the device"
    assert os.listdir(staging) == [], "the staging file is removed, the CO's dir kept"
    unstage(csi, volume_id, staging)  # idempotent

    stage(csi, volume_id, staging, block=True)
    publish(csi, volume_id, staging, target, block=True)
    assert read_at(target, 5 * MiB, MiB) == payload
    assert driver.record(volume_id)["formatted"] is None, "a raw block volume is never formatted"
    unpublish(csi, volume_id, target)
    unstage(csi, volume_id, staging)
    delete(csi, volume_id)
    assert not driver.backing_file(volume_id).exists() and driver.loops() == [] and driver.mounts() == []


def test_two_publishes_of_one_staged_block_volume(csi: Client, driver: Driver) -> None:
    """Two pods' targets share the staged device: one unpublish leaves the other working (its
    device node bind keeps the device), the last unstage detaches it."""
    volume_id = create(csi, "pvc-shared", block=True).volume_id
    staging, pods = dirs(driver)
    first, second = os.path.join(pods, "a"), os.path.join(pods, "b")
    stage(csi, volume_id, staging, block=True)
    publish(csi, volume_id, staging, first, block=True)
    publish(csi, volume_id, staging, second, block=True)
    device = device_at(first)
    assert device_at(second) == device
    write_at(first, 0, b"from a" * 100)
    assert read_at(second, 0, 600) == b"from a" * 100

    # The staging bind gone behind the plugin's back: the second pod's bind alone keeps the device.
    subprocess.run(["umount", staged_file(staging, volume_id)], check=True)
    unpublish(csi, volume_id, first)
    assert sysfs_bound(device), "detached while another pod's target still binds its node"
    write_at(second, 4096, b"from b")
    assert read_at(second, 4096, 6) == b"from b"
    unpublish(csi, volume_id, second)
    unstage(csi, volume_id, staging)
    assert not sysfs_bound(device) and driver.loops() == []
    delete(csi, volume_id)


def test_unstage_keeps_a_device_a_process_holds_open(csi: Client, driver: Driver) -> None:
    """A process still holding the device through a node of its own (as a container's runtime
    makes one, no mount) makes unstage answer FAILED_PRECONDITION naming it, the device kept
    bound; once it closes, the retried unstage detaches it."""
    volume_id = create(csi, "pvc-held", block=True).volume_id
    staging, pods = dirs(driver)
    target = os.path.join(pods, "dev")
    stage(csi, volume_id, staging, block=True)
    publish(csi, volume_id, staging, target, block=True)
    device = device_at(target)
    with open(device, "rb") as node:
        holder = subprocess.Popen(["sleep", "60"], stdin=node)
    try:
        unpublish(csi, volume_id, target)
        with pytest.raises(grpc.RpcError) as caught:
            unstage(csi, volume_id, staging)
        assert caught.value.code() == Code.FAILED_PRECONDITION  # type: ignore[attr-defined]
        assert f"pid {holder.pid} (sleep)" in caught.value.details()  # type: ignore[attr-defined]
        assert sysfs_bound(device)
        assert Path(f"/sys/block/{os.path.basename(device)}/loop/autoclear").read_text().strip() == "0"
    finally:
        holder.kill()
        holder.wait(10)
    assert sysfs_bound(device), "the device went with its holder's last close"
    unstage(csi, volume_id, staging)
    assert not sysfs_bound(device) and os.listdir(staging) == []
    delete(csi, volume_id)


def test_read_only_block_volumes_refuse_writes(csi: Client, driver: Driver) -> None:
    """A read-only publish is a read-only bind; a read-only stage makes the device itself
    read-only (a device node ignores its mount's flag), and the device number is writable
    again for the next volume."""
    volume_id = create(csi, "pvc-ro-raw", block=True).volume_id
    staging, pods = dirs(driver)
    rw, ro = os.path.join(pods, "rw"), os.path.join(pods, "ro")
    stage(csi, volume_id, staging, block=True)
    publish(csi, volume_id, staging, rw, block=True)
    publish(csi, volume_id, staging, ro, block=True, readonly=True)
    assert mounted(ro)[-1].read_only and not mounted(rw)[-1].read_only
    assert status_of(csi.node.NodePublishVolume, publish_request(volume_id, staging, ro, block=True)) == \
        Code.ALREADY_EXISTS, "a read-write publish over a read-only one"
    write_at(rw, 0, b"kept")
    for path in (rw, ro):
        unpublish(csi, volume_id, path)
    unstage(csi, volume_id, staging)

    reader = Mode.SINGLE_NODE_READER_ONLY
    stage(csi, volume_id, staging, block=True, mode=reader)
    publish(csi, volume_id, staging, ro, block=True, mode=reader)
    device = device_at(ro)
    assert kernel.read_only(device)
    assert read_at(ro, 0, 4) == b"kept"
    with pytest.raises(OSError) as refused:
        write_at(ro, 0, b"gone")
    assert refused.value.errno in (errno.EPERM, errno.EROFS, errno.EACCES)
    assert status_of(csi.node.NodePublishVolume, publish_request(volume_id, staging, rw, block=True)) == \
        Code.FAILED_PRECONDITION, "a read-write publish of a read-only stage"
    unpublish(csi, volume_id, ro)
    unstage(csi, volume_id, staging)
    assert not sysfs_bound(device) and not kernel.read_only(device), "the number left read-only"
    delete(csi, volume_id)


def test_a_volume_stays_the_access_type_it_was_made_as(csi: Client, driver: Driver) -> None:
    """A filesystem is never handed out raw, a raw volume never formatted nor mounted (by CSI or
    the FlexVolume driver); ValidateVolumeCapabilities says so, CreateVolume of the other type
    is ALREADY_EXISTS, and nothing is touched."""
    raw = create(csi, "pvc-raw-kind", block=True).volume_id
    fs = create(csi, "pvc-fs-kind").volume_id
    staging, _pods = dirs(driver)
    before = driver.backing_file(raw).read_bytes()
    # The spec's "exceeds capabilities": capabilities the volume does not support.
    assert status_of(csi.node.NodeStageVolume, stage_request(raw, staging)) == Code.FAILED_PRECONDITION
    assert status_of(csi.node.NodeStageVolume, stage_request(fs, staging, block=True)) == \
        Code.FAILED_PRECONDITION
    assert status_of(csi.node.NodePublishVolume, publish_request(raw, staging, driver.dir("t"))) == \
        Code.FAILED_PRECONDITION
    assert driver.mounts() == [] and os.listdir(staging) == [] and driver.loops() == []
    flex = driver.fail("mount", driver.dir("flex"), options(raw))
    assert "raw block" in flex.message
    assert driver.backing_file(raw).read_bytes() == before and driver.record(raw)["formatted"] is None
    assert driver.loops() == []

    validate = csi.controller.ValidateVolumeCapabilities
    for volume_id, good, bad in ((raw, block_capability(), mount_capability()),
                                 (fs, mount_capability(), block_capability())):
        assert validate(csi_pb2.ValidateVolumeCapabilitiesRequest(
            volume_id=volume_id, volume_capabilities=[good]), timeout=60).HasField("confirmed")
        reply = validate(csi_pb2.ValidateVolumeCapabilitiesRequest(volume_id=volume_id,
                                                                   volume_capabilities=[bad]), timeout=60)
        assert not reply.HasField("confirmed") and reply.message
    again = csi_pb2.CreateVolumeRequest(name="pvc-raw-kind", volume_capabilities=[mount_capability()],
                                        capacity_range=csi_pb2.CapacityRange(required_bytes=64 * MiB),
                                        parameters={"allocation": "thin"})
    assert status_of(csi.controller.CreateVolume, again) == Code.ALREADY_EXISTS
    both = csi_pb2.CreateVolumeRequest(name="pvc-both", volume_capabilities=[mount_capability(),
                                                                             block_capability()])
    assert status_of(csi.controller.CreateVolume, both) == Code.INVALID_ARGUMENT
    delete(csi, raw)
    delete(csi, fs)


def test_inline_block_volume_is_refused(csi: Client, driver: Driver) -> None:
    request = inline_request(INLINE_ID, driver.dir("inline"))
    request.volume_capability.CopyFrom(block_capability())
    with pytest.raises(grpc.RpcError) as caught:
        csi.node.NodePublishVolume(request, timeout=60)
    assert caught.value.code() == Code.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert "volumeMode: Block" in caught.value.details()  # type: ignore[attr-defined]
    assert not os.listdir(driver.root / "volumes") and driver.loops() == []
