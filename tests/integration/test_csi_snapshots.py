"""CSI snapshots and clones through `flexvol csi` on real loop devices: CreateSnapshot,
ListSnapshots (paging), DeleteSnapshot, CreateVolume from a snapshot or a volume."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import grpc

from flexvol.csi.proto import csi_pb2
from tests.helpers.csi import Client, mount_capability, status_of
from tests.helpers.driver import Driver
from tests.integration.test_csi_lifecycle import Plugin, create, csi, plugin, publish, stage  # noqa: F401
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


def test_snapshot_and_restore_killed_at_every_step_converge_on_retry(
        plugin: Plugin, driver: Driver) -> None:  # noqa: F811
    """The plugin SIGKILLed at each step of CreateSnapshot (of a published volume) and of
    CreateVolume from that snapshot, restarted and retried, as the external-snapshotter and
    provisioner do: a half snapshot is never listed, the published volume takes writes again,
    the retry converges and nothing is left."""
    client = plugin.start()
    volume = create(client, "pvc-src")
    staging, target = driver.dir("staging"), driver.dir("pod")
    stage(client, volume.volume_id, staging)
    publish(client, volume.volume_id, staging, target)
    data = write_file(Path(target, "data"), MiB)
    plugin.stop()
    trace = driver.base / "trace"
    plugin.env = {"FLEXVOL_TEST_HOOKS": "1", "FLEXVOL_TEST_TRACE": str(trace)}
    client = plugin.start()
    snapshot(client, "pvc-src", "probe")
    client.controller.CreateVolume(from_source(client, "pvc-probe", snapshot_id="probe"), timeout=120)
    plugin.stop()
    steps = list(dict.fromkeys(trace.read_text().split()))
    assert {"frozen", "thawed", "snapshot-ready", "restore-claimed", "restore-renamed"} <= set(steps), steps
    try:
        for number, step in enumerate(steps):
            plugin.env = {"FLEXVOL_TEST_HOOKS": "1", "FLEXVOL_TEST_KILL_AT": step}
            client = plugin.start()
            name, volume_name = f"snap-{number}", f"pvc-restored-{number}"
            take = csi_pb2.CreateSnapshotRequest(source_volume_id="pvc-src", name=name)
            restore = from_source(client, volume_name, snapshot_id=name)
            first = status_of(client.controller.CreateSnapshot, take)
            if first == Code.OK:  # the step belongs to the restore
                assert status_of(client.controller.CreateVolume, restore) == Code.UNAVAILABLE, step
            else:
                assert first == Code.UNAVAILABLE, step
            assert plugin.process is not None and plugin.process.wait(10) == -signal.SIGKILL
            plugin.stop()
            plugin.env = {}
            client = plugin.start()
            shown = [entry.snapshot for entry in listed(client, snapshot_id=name).entries]
            assert all(item.ready_to_use for item in shown), step
            assert status_of(client.controller.CreateSnapshot, take) == Code.OK, f"retry after {step}"
            write_file(Path(target, f"after-{number}"), 4096)  # not frozen: this returns
            assert status_of(client.controller.CreateVolume, restore) == Code.OK, f"retry after {step}"
            record = driver.record(volume_name)
            assert record["csi_name"] == volume_name and "restoring" not in record, step
            client.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume_name), timeout=60)
            client.controller.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=name), timeout=60)
            plugin.stop()
    finally:
        subprocess.run(["fsfreeze", "-u", target], capture_output=True, check=False)  # the test's own mount
    client = plugin.start()
    assert [entry.snapshot.snapshot_id for entry in listed(client).entries] == ["probe"]
    assert sorted(os.listdir(driver.root / "volumes")) == ["pvc-probe.img", "pvc-src.img"]
    assert not (driver.root / "frozen").exists() or os.listdir(driver.root / "frozen") == []
    assert digest(Path(target, "data")) == data
