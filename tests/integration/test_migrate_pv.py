"""flexvol migrate-pv on a real volume: made and written through the FlexVolume driver (real
loop device, ext4, mount), converted against an in-memory API server with the PV controller's
binding rules, then staged and deleted through the CSI plugin's own services."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from flexvol.core import kernel, state
from flexvol.core.config import Config
from flexvol.csi.controller import Controller
from flexvol.csi.node import Node
from flexvol.csi.proto import csi_pb2
from flexvol.provisioning import kube
from flexvol.provisioning.migration import MigrationRefused
from flexvol.provisioning.migrator import Migrator, state_path
from tests.helpers.cli import flexvol
from tests.helpers.csi import FakeContext, mount_capability
from tests.helpers.driver import Driver, is_mount_point, options
from tests.helpers.fakebinder import BinderCluster, bound_pair, csi_node

VOLUME = "pvc-5b0f2c8e-3d5a-4a57-9a0e-0c6a2f3f1e11"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def migrator(cluster: BinderCluster, config: Config) -> Migrator:
    return Migrator(cluster, config, "worker-1", timeout=10, sleep=lambda _: cluster.sync())


@pytest.fixture
def cluster() -> BinderCluster:
    cluster = BinderCluster()
    cluster.put_node(csi_node("worker-1"))
    cluster.nodes["worker-1"]["status"] = {}
    bound_pair(cluster, VOLUME)
    cluster.writes.clear()
    return cluster


def test_a_flexvolume_volume_migrated_is_staged_by_csi_with_its_data_and_deleted_by_it(
        driver: Driver, cluster: BinderCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    config = Config(str(driver.root))
    pod_dir = driver.dir("pod")
    driver.ok("mount", pod_dir, options(VOLUME, size="64Mi", pv=VOLUME))
    Path(pod_dir, "kept.txt").write_text("written through the FlexVolume driver\n")

    # Mounted: refused on the kernel's word, nothing changed anywhere.
    with pytest.raises(MigrationRefused, match=r"is in use: mounted at .*pod"):
        migrator(cluster, config).run(VOLUME)
    assert cluster.writes == [] and not os.path.exists(state_path(config, VOLUME))

    driver.ok("unmount", pod_dir)
    assert driver.loops() == []
    before = digest(driver.backing_file(VOLUME))
    record_before = driver.record(VOLUME)

    # Through the command, as an operator runs it (the API server is the in-memory one).
    monkeypatch.setattr(kube, "api_client", lambda kubeconfig: None)
    monkeypatch.setattr(kube, "KubeCluster", lambda api: cluster)
    cluster.auto_sync = True
    result = flexvol("migrate-pv", VOLUME, "--node", "worker-1", root=config.data_root)
    assert result.exit_code == 0, result.output
    assert "created CSI PersistentVolume" in result.stdout and "claim shop/data is Bound" in result.stdout
    journal = (driver.root / "log" / "calls.jsonl").read_text().splitlines()
    assert '"toolkit:migrate-pv"' in journal[-1] and '"Success"' in journal[-1]
    pv = cluster.pvs[VOLUME]
    assert pv["spec"]["csi"]["volumeHandle"] == VOLUME and pv["spec"]["csi"]["fsType"] == "ext4"
    assert cluster.claims[("shop", "data")]["status"]["phase"] == "Bound"
    record = driver.record(VOLUME)
    assert (record["csi_name"], record["created_by"]) == (VOLUME, "csi")
    # Only the two fields were added; the data was not touched.
    assert {key: value for key, value in record.items() if key not in ("csi_name", "created_by")} == \
        record_before
    assert digest(driver.backing_file(VOLUME)) == before
    assert driver.loops() == [] and not driver.mounts()

    # The CSI plugin serves it as one of its own: stage it, the file is there.
    node = Node(config, "worker-1")
    staging = driver.dir("staging")
    os.makedirs(staging)
    node.NodeStageVolume(csi_pb2.NodeStageVolumeRequest(
        volume_id=VOLUME, staging_target_path=staging, volume_capability=mount_capability(),
        volume_context=pv["spec"]["csi"]["volumeAttributes"]), FakeContext())
    try:
        assert is_mount_point(staging)
        assert Path(staging, "kept.txt").read_text() == "written through the FlexVolume driver\n"
    finally:
        node.NodeUnstageVolume(csi_pb2.NodeUnstageVolumeRequest(
            volume_id=VOLUME, staging_target_path=staging), FakeContext())
    assert not is_mount_point(staging) and driver.loops() == []
    # ... and DeleteVolume removes it (it would refuse a volume CSI did not make).
    Controller(config, "worker-1").DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=VOLUME),
                                                FakeContext())
    assert not driver.backing_file(VOLUME).exists()
    assert state.load_record(config, VOLUME) is None
    assert not any(str(driver.root) in backing for backing in kernel.loop_devices().values())
