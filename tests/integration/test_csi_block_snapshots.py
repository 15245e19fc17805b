"""Snapshots, restores, clones and growth of raw block volumes through `flexvol csi` on real
loop devices: the bytes written through the published device node are what a snapshot, a
restore and a clone hold; a copy is a raw block volume too (never formatted, no UUID); a
published block volume grows, as BLKGETSIZE64 on its device node shows, keeping its bytes."""

from __future__ import annotations

import fcntl
import json
import os
import struct

import grpc

from flexvol.csi.proto import csi_pb2
from tests.helpers.cli import flexvol
from tests.helpers.csi import Client, block_capability, status_of
from tests.helpers.driver import Driver
from tests.integration.test_csi_block import csi, device_at, read_at  # noqa: F401
from tests.integration.test_csi_lifecycle import (
    MiB,
    create,
    delete,
    publish,
    stage,
    unpublish,
    unstage,
)
from tests.integration.test_csi_snapshots import from_source, snapshot

Code = grpc.StatusCode
BLKGETSIZE64 = 0x80081272
PATTERN_AT = 5 * MiB


def device_bytes(path: str) -> int:
    """The size the kernel gives the block device at `path` (BLKGETSIZE64)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return struct.unpack("Q", fcntl.ioctl(fd, BLKGETSIZE64, b"\0" * 8))[0]
    finally:
        os.close(fd)


def write_buffered(path: str, offset: int, data: bytes) -> int:
    """Write through the device's page cache and leave it there: no fsync, and the device kept
    open (its last close would write the buffers back), as an application between its flushes.
    A snapshot must still see it. The caller closes the descriptor returned."""
    fd = os.open(path, os.O_WRONLY)
    assert os.pwrite(fd, data, offset) == len(data)
    return fd


def block_from(name: str, *, snapshot_id: str = "", volume_id: str = "",
               size: int = 64 * MiB) -> csi_pb2.CreateVolumeRequest:
    request = from_source(None, name, size, snapshot_id=snapshot_id, volume_id=volume_id)  # type: ignore[arg-type]
    del request.volume_capabilities[:]
    request.volume_capabilities.append(block_capability())
    return request


class Published:
    """A block volume staged and published on a file; `release` unpublishes and unstages."""

    def __init__(self, client: Client, driver: Driver, volume_id: str, tag: str) -> None:
        self.client, self.volume_id = client, volume_id
        self.staging, pods = driver.dir(f"staging-{tag}"), driver.dir(f"pods-{tag}")
        os.makedirs(self.staging)
        os.makedirs(pods)
        self.target = os.path.join(pods, "dev")
        stage(client, volume_id, self.staging, block=True)
        publish(client, volume_id, self.staging, self.target, block=True)

    def release(self) -> None:
        unpublish(self.client, self.volume_id, self.target)
        unstage(self.client, self.volume_id, self.staging)


def test_block_snapshot_restore_gives_back_the_bytes_written_through_the_device(
        csi: Client, driver: Driver) -> None:  # noqa: F811
    """write a pattern through the published device (left in its buffers) -> snapshot ->
    overwrite -> restore -> the restored device reads the original pattern; the snapshot and
    the restored volume are recorded raw block, the copy never formatted."""
    volume_id = create(csi, "pvc-raw-src", block=True).volume_id
    source = Published(csi, driver, volume_id, "src")
    pattern = os.urandom(2 * MiB)
    held = write_buffered(source.target, PATTERN_AT, pattern)
    try:
        taken = snapshot(csi, volume_id, "snap-raw")
    finally:
        os.close(held)
    assert taken.ready_to_use and taken.size_bytes == 64 * MiB
    snap_record = json.loads((driver.root / "snapshots" / f"{taken.snapshot_id}.json").read_text())
    assert snap_record["block"] is True and snap_record["fs_type"] is None
    assert snap_record["frozen"] is False
    shown = flexvol("snapshot", "show", taken.snapshot_id, root=str(driver.root))
    assert shown.exit_code == 0 and "none: a raw block volume's" in shown.output, shown.output
    listed = flexvol("snapshot", "ls", root=str(driver.root))
    assert "raw block" in listed.output and "None" not in listed.output, listed.output
    os.close(write_buffered(source.target, PATTERN_AT, b"\xff" * len(pattern)))

    restored = csi.controller.CreateVolume(block_from("pvc-raw-restored", snapshot_id=taken.snapshot_id),
                                           timeout=120).volume
    assert "fsType" not in restored.volume_context
    record = driver.record(restored.volume_id)
    assert record["block"] is True and record["formatted"] is None and record.get("restoring") is None
    assert record["restored_from"]["from_snapshot"] == taken.snapshot_id
    copy = Published(csi, driver, restored.volume_id, "restored")
    assert read_at(copy.target, PATTERN_AT, len(pattern)) == pattern
    assert read_at(source.target, PATTERN_AT, 16) == b"\xff" * 16, "the source keeps its own bytes"
    copy.release()
    source.release()
    csi.controller.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=taken.snapshot_id), timeout=60)
    delete(csi, restored.volume_id)
    delete(csi, volume_id)


def test_block_clone_of_a_published_volume_holds_its_bytes(csi: Client, driver: Driver) -> None:  # noqa: F811
    """A clone of a published raw block volume, bigger than its source, holds the bytes written
    just before (still in the device's buffers) and is a raw block volume of the size asked."""
    volume_id = create(csi, "pvc-raw-origin", block=True).volume_id
    source = Published(csi, driver, volume_id, "origin")
    pattern = os.urandom(MiB)
    held = write_buffered(source.target, PATTERN_AT, pattern)
    try:
        cloned = csi.controller.CreateVolume(block_from("pvc-raw-clone", volume_id=volume_id, size=96 * MiB),
                                             timeout=120).volume
    finally:
        os.close(held)
    assert cloned.capacity_bytes == 96 * MiB and cloned.content_source.volume.volume_id == volume_id
    record = driver.record(cloned.volume_id)
    assert record["block"] is True and record["formatted"] is None
    copy = Published(csi, driver, cloned.volume_id, "clone")
    assert device_bytes(copy.target) == 96 * MiB
    assert read_at(copy.target, PATTERN_AT, len(pattern)) == pattern
    copy.release()
    source.release()
    delete(csi, cloned.volume_id)
    delete(csi, volume_id)


def test_a_copy_keeps_its_sources_access_type(csi: Client, driver: Driver) -> None:  # noqa: F811
    """A raw block source gives only raw block copies, a filesystem source only filesystem
    ones: INVALID_ARGUMENT otherwise, and nothing is made."""
    raw = create(csi, "pvc-raw-kind", block=True).volume_id
    formatted = create(csi, "pvc-fs-kind").volume_id
    raw_snap = snapshot(csi, raw, "snap-raw-kind").snapshot_id
    for request in (from_source(csi, "pvc-bad-1", snapshot_id=raw_snap),
                    from_source(csi, "pvc-bad-2", volume_id=raw),
                    block_from("pvc-bad-3", volume_id=formatted)):
        assert status_of(csi.controller.CreateVolume, request) == Code.INVALID_ARGUMENT
    assert sorted(os.listdir(driver.root / "records")) == sorted(f"{name}.json" for name in (raw, formatted))
    csi.controller.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=raw_snap), timeout=60)
    delete(csi, raw)
    delete(csi, formatted)


def test_published_block_volume_grows_keeping_its_bytes(csi: Client, driver: Driver) -> None:  # noqa: F811
    """ControllerExpandVolume then NodeExpandVolume on the published device file: the device
    the pod sees (BLKGETSIZE64) grows, its bytes stay, the record says the new size."""
    volume_id = create(csi, "pvc-raw-grow", block=True).volume_id
    published = Published(csi, driver, volume_id, "grow")
    pattern = os.urandom(MiB)
    os.close(write_buffered(published.target, PATTERN_AT, pattern))
    assert device_bytes(published.target) == 64 * MiB
    reply = csi.controller.ControllerExpandVolume(csi_pb2.ControllerExpandVolumeRequest(
        volume_id=volume_id, capacity_range=csi_pb2.CapacityRange(required_bytes=96 * MiB),
        volume_capability=block_capability()), timeout=120)
    assert reply.capacity_bytes == 96 * MiB and not reply.node_expansion_required
    grown = csi.node.NodeExpandVolume(csi_pb2.NodeExpandVolumeRequest(
        volume_id=volume_id, volume_path=published.target,
        capacity_range=csi_pb2.CapacityRange(required_bytes=128 * MiB),
        volume_capability=block_capability()), timeout=120)
    assert grown.capacity_bytes == 128 * MiB
    assert device_bytes(published.target) == 128 * MiB
    assert device_bytes(device_at(published.target)) == 128 * MiB
    assert read_at(published.target, PATTERN_AT, len(pattern)) == pattern
    assert driver.record(volume_id)["size_bytes"] == 128 * MiB
    assert driver.record(volume_id)["formatted"] is None, "never formatted"
    published.release()
    delete(csi, volume_id)


def test_block_volume_node_expand_without_a_capability(csi: Client, driver: Driver) -> None:  # noqa: F811
    """NodeExpandVolume of a published raw block volume without volume_capability (csi-sanity
    sends none): the target is a file, not refused as 'not a directory'."""
    volume_id = create(csi, "pvc-raw-nocap", block=True).volume_id
    published = Published(csi, driver, volume_id, "nocap")
    grown = csi.node.NodeExpandVolume(csi_pb2.NodeExpandVolumeRequest(
        volume_id=volume_id, volume_path=published.target,
        capacity_range=csi_pb2.CapacityRange(required_bytes=80 * MiB)), timeout=120)
    assert grown.capacity_bytes == 80 * MiB and device_bytes(published.target) == 80 * MiB
    published.release()
    delete(csi, volume_id)


def test_flexvol_resize_grows_a_raw_block_volume(csi: Client, driver: Driver) -> None:  # noqa: F811
    """`flexvol resize` of a published raw block volume grows its file and loop device, as
    ControllerExpandVolume does (no filesystem to grow), instead of refusing it as never
    formatted; its bytes stay and it stays unformatted."""
    volume_id = create(csi, "pvc-raw-resize", block=True).volume_id
    published = Published(csi, driver, volume_id, "resize")
    pattern = os.urandom(MiB)
    os.close(write_buffered(published.target, PATTERN_AT, pattern))
    result = flexvol("resize", volume_id, "96Mi", root=str(driver.root))
    assert result.exit_code == 0, result.output
    assert device_bytes(published.target) == 96 * MiB
    assert read_at(published.target, PATTERN_AT, len(pattern)) == pattern
    record = driver.record(volume_id)
    assert record["size_bytes"] == 96 * MiB and record["formatted"] is None and not record.get("growing")
    published.release()
    delete(csi, volume_id)
