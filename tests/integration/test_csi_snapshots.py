"""CSI snapshots and clones through `flexvol csi` on real loop devices: CreateSnapshot,
ListSnapshots (paging), DeleteSnapshot, CreateVolume from a snapshot or a volume."""

from __future__ import annotations

from pathlib import Path

import grpc

from flexvol.csi.proto import csi_pb2
from tests.helpers.csi import Client, mount_capability, status_of
from tests.helpers.driver import Driver
from tests.integration.test_csi_lifecycle import create, csi, plugin, publish, stage  # noqa: F401
from tests.integration.test_snapshots import digest, write_file

Code = grpc.StatusCode
MiB = 1 << 20
RPC = csi_pb2.ControllerServiceCapability.RPC


def snapshot(client: Client, source: str, name: str) -> csi_pb2.Snapshot:
    return client.controller.CreateSnapshot(csi_pb2.CreateSnapshotRequest(
        source_volume_id=source, name=name), timeout=120).snapshot


def from_source(client: Client, name: str, size: int = 64 * MiB, *, snapshot_id: str = "",
                volume_id: str = "") -> csi_pb2.CreateVolumeRequest:
    source = csi_pb2.VolumeContentSource(
        snapshot=csi_pb2.VolumeContentSource.SnapshotSource(snapshot_id=snapshot_id)) if snapshot_id else \
        csi_pb2.VolumeContentSource(volume=csi_pb2.VolumeContentSource.VolumeSource(volume_id=volume_id))
    return csi_pb2.CreateVolumeRequest(
        name=name, capacity_range=csi_pb2.CapacityRange(required_bytes=size),
        volume_capabilities=[mount_capability()], parameters={"allocation": "thin"},
        volume_content_source=source)


def listed(client: Client, **fields: object) -> csi_pb2.ListSnapshotsResponse:
    return client.controller.ListSnapshots(csi_pb2.ListSnapshotsRequest(**fields), timeout=60)


def test_snapshot_restore_and_clone_through_csi(driver: Driver, csi: Client) -> None:  # noqa: F811
    kinds = {item.rpc.type for item in csi.controller.ControllerGetCapabilities(
        csi_pb2.ControllerGetCapabilitiesRequest(), timeout=60).capabilities}
    assert {RPC.CREATE_DELETE_SNAPSHOT, RPC.LIST_SNAPSHOTS, RPC.CLONE_VOLUME} <= kinds
    volume = create(csi, "pvc-src")
    staging, target = driver.dir("staging"), driver.dir("pod")
    stage(csi, volume.volume_id, staging)
    publish(csi, volume.volume_id, staging, target)
    data = write_file(Path(target, "data"), 2 * MiB)
    first = snapshot(csi, volume.volume_id, "snap-1")  # of a published volume: frozen for the copy
    assert first.ready_to_use and first.source_volume_id == "pvc-src" and first.size_bytes == 64 * MiB
    assert first.creation_time.seconds > 0
    assert snapshot(csi, volume.volume_id, "snap-1") == first  # a repeat answers the same
    write_file(Path(target, "after"), MiB)
    snapshot(csi, volume.volume_id, "snap-2")
    # paging: one a page, a token to the next
    page = listed(csi, max_entries=1)
    assert [entry.snapshot.snapshot_id for entry in page.entries] == ["snap-1"] and page.next_token
    rest = listed(csi, max_entries=1, starting_token=page.next_token)
    assert [entry.snapshot.snapshot_id for entry in rest.entries] == ["snap-2"] and not rest.next_token
    assert [e.snapshot.snapshot_id for e in listed(csi, snapshot_id="snap-2").entries] == ["snap-2"]
    assert len(listed(csi, source_volume_id="pvc-src").entries) == 2
    assert listed(csi, source_volume_id="nope").entries == []
    assert status_of(csi.controller.ListSnapshots, csi_pb2.ListSnapshotsRequest(starting_token="x")) == \
        Code.ABORTED
    # another volume may not take a snapshot name that is in use
    other = create(csi, "pvc-other")
    assert status_of(csi.controller.CreateSnapshot, csi_pb2.CreateSnapshotRequest(
        source_volume_id=other.volume_id, name="snap-1")) == Code.ALREADY_EXISTS
    assert status_of(csi.controller.CreateSnapshot, csi_pb2.CreateSnapshotRequest(
        source_volume_id="missing", name="snap-x")) == Code.NOT_FOUND

    restored = csi.controller.CreateVolume(from_source(csi, "pvc-restored", 96 * MiB, snapshot_id="snap-1"),
                                           timeout=120).volume
    assert restored.capacity_bytes == 96 * MiB
    assert restored.content_source.snapshot.snapshot_id == "snap-1"
    clone = csi.controller.CreateVolume(from_source(csi, "pvc-clone", volume_id="pvc-src"),
                                        timeout=120).volume
    assert clone.content_source.volume.volume_id == "pvc-src"
    for made, has_after in ((restored, False), (clone, True)):
        where = driver.dir(f"pod-{made.volume_id}")
        stage(csi, made.volume_id, driver.dir(f"staging-{made.volume_id}"))
        publish(csi, made.volume_id, driver.dir(f"staging-{made.volume_id}"), where)
        assert digest(Path(where, "data")) == data
        assert Path(where, "after").exists() == has_after
    assert status_of(csi.controller.CreateVolume, from_source(csi, "pvc-bad", snapshot_id="nope")) == \
        Code.NOT_FOUND
    # a repeat of a restore answers with the volume made; the name with another source is taken
    again = csi.controller.CreateVolume(from_source(csi, "pvc-restored", 96 * MiB, snapshot_id="snap-1"),
                                        timeout=120).volume
    assert again.volume_id == restored.volume_id
    assert status_of(csi.controller.CreateVolume, from_source(csi, "pvc-restored", snapshot_id="snap-2")) == \
        Code.ALREADY_EXISTS

    for snapshot_id in ("snap-1", "snap-2", "snap-1"):  # the second delete of snap-1 succeeds too
        csi.controller.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=snapshot_id), timeout=60)
    assert listed(csi).entries == []
    assert sorted(p.name for p in (driver.root / "snapshots").iterdir()) == []
