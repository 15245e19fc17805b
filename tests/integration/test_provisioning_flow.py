"""A claim's whole life without a cluster: the provisioner makes the PV (in-memory API server),
the driver mounts it on real loop devices with the options the kubelet would send, and the
agent reclaims it once Kubernetes marks it Released. The same scenarios run on a real cluster
in the e2e suite."""

from __future__ import annotations

import json

from flexvol.core.config import Config
from flexvol.provisioning.agent import Agent
from flexvol.provisioning.cluster import EventRecorder
from flexvol.provisioning.provisioner import Provisioner
from tests.helpers.driver import Driver
from tests.helpers.fakekube import FakeCluster, fixture

MiB = 1 << 20


def kubelet_options(pv: dict) -> str:
    """What the kubelet sends to mount a flexVolume PV (docs/flexvolume.md section 4)."""
    flex = pv["spec"]["flexVolume"]
    return json.dumps({"kubernetes.io/fsType": flex["fsType"], "kubernetes.io/readwrite": "rw",
                       "kubernetes.io/pvOrVolumeName": pv["metadata"]["name"]} | flex["options"])


def provisioned(cluster: FakeCluster, driver: Driver, policy: str) -> dict:
    storage_class = fixture("sc-wffc-delete")
    storage_class["reclaimPolicy"] = policy
    cluster.put_class(storage_class)
    cluster.put_node(fixture("node-worker-1"))
    claim = fixture("claim-wffc-selected")
    claim["spec"]["resources"]["requests"]["storage"] = "64Mi"
    agent = Agent(cluster, Config(str(driver.root)), "worker-1", EventRecorder(cluster, "agent"),
                  capacity_limit=1 << 30)
    agent.publish_capacity()
    Provisioner(cluster, EventRecorder(cluster, "provisioner")).sync_claim(cluster.put_claim(claim))
    [pv] = cluster.pvs.values()
    # The agent sees the new PV before the kubelet mounts it: the volume's owner is recorded
    # in a record without a file yet, which the driver's first mount completes.
    agent.resync()
    return pv


def release(cluster: FakeCluster, pv: dict) -> dict:
    """What the PV controller does once the claim is deleted."""
    pv = cluster.pvs[pv["metadata"]["name"]]
    pv["status"] = {"phase": "Released"}
    return pv


def test_delete_class_volume_is_removed_after_release(driver: Driver) -> None:
    cluster = FakeCluster()
    pv = provisioned(cluster, driver, "Delete")
    volume_id = pv["spec"]["flexVolume"]["options"]["volumeID"]
    target = driver.dir("pod")
    assert driver.record(volume_id)["pv_uid"] == pv["metadata"]["uid"]
    assert not driver.backing_file(volume_id).exists()
    driver.ok("mount", target, kubelet_options(pv))
    (driver.base / "mnt" / "pod" / "file").write_bytes(b"x" * MiB)
    record = driver.record(volume_id)
    assert (record["pv_uid"], record["namespace"], record["claim"]) == (
        pv["metadata"]["uid"], "shop", "shop/data")
    assert record["formatted"]["fs_type"] == "ext4"
    agent = Agent(cluster, Config(str(driver.root)), "worker-1", EventRecorder(cluster, "agent"))
    agent.publish_capacity()
    assert cluster.capacities["worker-1"]["volumes"] == {volume_id: 64 * MiB}
    # Released while the pod's mount is still there: refused, retried
    agent.reclaim(release(cluster, pv), cluster.get_node("worker-1"))
    assert driver.backing_file(volume_id).exists()
    assert "is in use: mounted at" in cluster.events_for(pv["metadata"]["name"])[-1][2]
    driver.ok("unmount", target)
    agent.reclaim(release(cluster, pv), cluster.get_node("worker-1"))
    assert not driver.backing_file(volume_id).exists()
    assert driver.loops() == []
    # The agent may not delete PVs: the provisioner deletes the one it reports reclaimed.
    assert list(cluster.pvs) == [pv["metadata"]["name"]]
    assert cluster.capacities["worker-1"]["volumes"] == {}
    assert Provisioner(cluster, EventRecorder(cluster, "provisioner")).delete_reclaimed() == [
        pv["metadata"]["name"]]
    assert cluster.pvs == {}


def test_retain_class_keeps_pv_and_data(driver: Driver) -> None:
    cluster = FakeCluster()
    pv = provisioned(cluster, driver, "Retain")
    volume_id = pv["spec"]["flexVolume"]["options"]["volumeID"]
    target = driver.dir("pod")
    driver.ok("mount", target, kubelet_options(pv))
    (driver.base / "mnt" / "pod" / "file").write_text("kept")
    driver.ok("unmount", target)
    agent = Agent(cluster, Config(str(driver.root)), "worker-1", EventRecorder(cluster, "agent"))
    agent.step(watch_seconds=1)
    agent.reclaim(release(cluster, pv), None)
    assert list(cluster.pvs) == [pv["metadata"]["name"]]
    driver.ok("mount", target, kubelet_options(pv))
    assert (driver.base / "mnt" / "pod" / "file").read_text() == "kept"
    driver.ok("unmount", target)
    assert driver.backing_file(volume_id).exists()
