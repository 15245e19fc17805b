"""Claims with a data source without a cluster: the provisioner (in-memory API server) makes a
PV that names the source, the agent publishes the node's volumes and ready snapshots, and the
driver makes the copy at the first mount, on real loop devices."""

from __future__ import annotations

import copy
import json
import os
import subprocess

import pytest

from flexvol.core.config import Config
from flexvol.provisioning import names
from flexvol.provisioning.agent import Agent
from flexvol.provisioning.cluster import EventRecorder
from flexvol.provisioning.provisioner import Provisioner
from tests.helpers.cli import flexvol
from tests.helpers.driver import MINIMAL_PATH, Driver, is_mount_point, options, parse_reply
from tests.helpers.fakekube import FakeCluster, fixture
from tests.integration.test_provisioning_flow import kubelet_options

MiB = 1 << 20
SOURCE_PV = "pvc-5b0f2c8e-3d5a-4a57-9a0e-0c6a2f3f1e11"
SNAPSHOT_GROUP = "snapshot.storage.k8s.io"


def agent(cluster: FakeCluster, driver: Driver) -> Agent:
    return Agent(cluster, Config(str(driver.root)), "worker-1", EventRecorder(cluster, "agent"),
                 capacity_limit=1 << 30)


def source_volume(cluster: FakeCluster, driver: Driver) -> tuple[dict, bytes]:
    """Claim shop/data provisioned, bound, mounted by its pod and written to; left mounted."""
    cluster.put_class(fixture("sc-wffc-delete"))
    immediate = copy.deepcopy(fixture("sc-wffc-delete"))
    immediate["metadata"]["name"] = "flexvol-now"
    immediate["volumeBindingMode"] = "Immediate"
    cluster.put_class(immediate)
    cluster.put_node(fixture("node-worker-1"))
    claim = fixture("claim-wffc-selected")
    claim["spec"]["resources"]["requests"]["storage"] = "64Mi"
    agent(cluster, driver).publish_capacity()
    Provisioner(cluster, EventRecorder(cluster, "provisioner")).sync_claim(cluster.put_claim(claim))
    pv = cluster.pvs[SOURCE_PV]
    pv["status"] = {"phase": "Bound"}
    bound = cluster.claims[("shop", "data")]
    bound["spec"]["volumeName"], bound["status"] = SOURCE_PV, {"phase": "Bound"}
    driver.ok("mount", driver.dir("source"), kubelet_options(pv))
    data = os.urandom(3 * MiB)
    path = os.path.join(driver.dir("source"), "data.bin")
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return pv, data


def copy_claim(cluster: FakeCluster, source: dict, uid: str) -> dict:
    claim = copy.deepcopy(fixture("claim-immediate"))
    claim["metadata"].update(name=f"copy-{uid[:4]}", uid=uid)
    claim["spec"].update(storageClassName="flexvol-now", dataSource=source)
    claim["spec"]["resources"]["requests"]["storage"] = "96Mi"
    Provisioner(cluster, EventRecorder(cluster, "provisioner")).sync_claim(cluster.put_claim(claim))
    return cluster.pvs[f"pvc-{uid}"]


def mounted_copy(cluster: FakeCluster, driver: Driver, pv: dict, data: bytes, name: str) -> dict:
    """The agent records the copy's owner first (as on a cluster), then the pod mounts it."""
    pv["status"] = {"phase": "Bound"}
    agent(cluster, driver).resync()
    volume_id = pv["spec"]["flexVolume"]["options"]["volumeID"]
    assert not driver.backing_file(volume_id).exists()
    driver.ok("mount", driver.dir(name), kubelet_options(pv))
    with open(os.path.join(driver.dir(name), "data.bin"), "rb") as handle:
        assert handle.read() == data
    record = driver.record(volume_id)
    assert record["pv_uid"] == pv["metadata"]["uid"]  # the owner the agent recorded is kept
    assert record["size_bytes"] == 96 * MiB           # grown to the claim's request
    driver.ok("unmount", driver.dir(name))
    return record


def test_a_claim_cloned_from_a_mounted_claim_reads_its_bytes(driver: Driver) -> None:
    cluster = FakeCluster()
    _, data = source_volume(cluster, driver)
    try:
        agent(cluster, driver).publish_capacity()
        pv = copy_claim(cluster, {"kind": "PersistentVolumeClaim", "name": "data"},
                        "c1000000-0000-4000-8000-000000000001")
        assert pv["metadata"]["annotations"][names.NODE_ANNOTATION] == "worker-1"
        record = mounted_copy(cluster, driver, pv, data, "clone")
        assert record["restored_from"]["from_volume"] == SOURCE_PV
        assert record["formatted"]["fs_type"] == "ext4"
    finally:
        driver.ok("unmount", driver.dir("source"))


def test_a_claim_restored_from_a_pre_provisioned_snapshot_reads_its_bytes(driver: Driver) -> None:
    cluster = FakeCluster()
    _, data = source_volume(cluster, driver)
    try:
        made = flexvol("snapshot", "create", SOURCE_PV, "data-monday", root=str(driver.root))
        assert made.exit_code == 0, made.output
    finally:
        driver.ok("unmount", driver.dir("source"))
    shown = flexvol("show", SOURCE_PV, root=str(driver.root))
    assert shown.exit_code == 0 and "data-monday  holds 3" in shown.output, shown.output
    agent(cluster, driver).publish_capacity()
    published = cluster.capacities["worker-1"]["snapshots"]
    assert published == {"data-monday": {"volume": SOURCE_PV, "sizeBytes": 64 * MiB, "fsType": "ext4"}}
    printed = flexvol("snapshot", "manifest", "data-monday", "--namespace", "shop",
                      "--name", "snap", root=str(driver.root))
    assert printed.exit_code == 0, printed.output
    import yaml

    for doc in yaml.safe_load_all(printed.stdout):
        if doc["kind"] == "VolumeSnapshot":
            cluster.volume_snapshots[("shop", "snap")] = doc
        else:
            cluster.snapshot_contents[doc["metadata"]["name"]] = doc
    pv = copy_claim(cluster, {"apiGroup": SNAPSHOT_GROUP, "kind": "VolumeSnapshot", "name": "snap"},
                    "c2000000-0000-4000-8000-000000000002")
    record = mounted_copy(cluster, driver, pv, data, "restore")
    assert record["restored_from"]["from_snapshot"] == "data-monday"


@pytest.mark.parametrize("step", ["restore-claimed", "copied", "restore-renamed"])
def test_a_first_mount_killed_while_copying_leaves_no_half_volume(driver: Driver, step: str) -> None:
    cluster = FakeCluster()
    _, data = source_volume(cluster, driver)
    driver.ok("unmount", driver.dir("source"))
    agent(cluster, driver).publish_capacity()
    pv = copy_claim(cluster, {"kind": "PersistentVolumeClaim", "name": "data"},
                    "c3000000-0000-4000-8000-000000000003")
    volume_id = pv["spec"]["flexVolume"]["options"]["volumeID"]
    env = {"PATH": MINIMAL_PATH, "FLEXVOL_ROOT": str(driver.root), "FLEXVOL_TEST_HOOKS": "1",
           "FLEXVOL_TEST_KILL_AT": step}
    done = subprocess.run([str(driver.executable), "mount", driver.dir("killed"), kubelet_options(pv)],
                          env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=120, check=False)
    assert done.returncode == -9, done.stdout.decode()
    # Killed: the kubelet's next call may be a mount of the same PV; it sees no mount yet.
    refused = driver.call("mount", driver.dir("other"), json.dumps(
        {**json.loads(kubelet_options(pv)), "fromVolume": ""}))
    assert refused.status == "Failure" and "not ready yet" in refused.message, refused.output
    driver.ok("mount", driver.dir("killed"), kubelet_options(pv))
    with open(os.path.join(driver.dir("killed"), "data.bin"), "rb") as handle:
        assert handle.read() == data
    driver.ok("unmount", driver.dir("killed"))
    assert sorted(os.listdir(driver.root / "volumes")) == sorted([f"{SOURCE_PV}.img", f"{volume_id}.img"])
    assert parse_reply(driver.ok("mount", driver.dir("killed"), kubelet_options(pv)).output)
    driver.ok("unmount", driver.dir("killed"))


def test_a_pod_cannot_copy_another_namespaces_volume_or_snapshot(driver: Driver) -> None:
    """Regression: fromVolume / fromSnapshot in a pod's inline flexVolume copied any volume on
    the node, so a pod of one namespace could read another namespace's data through a copy.
    The source's owner is checked as for a mount; the refused copy makes nothing."""
    def pod_options(volume: str, namespace: str, **extra: str) -> str:
        return options(volume, **{"kubernetes.io/pod.namespace": namespace, "kubernetes.io/pod.name": "p",
                                  **extra})

    source = driver.dir("source")
    driver.ok("mount", source, pod_options("secret-data", "shop"))
    with open(os.path.join(source, "data.bin"), "wb") as handle:
        handle.write(b"shop's data")
    driver.ok("unmount", source)
    snapshot = flexvol("snapshot", "create", "secret-data", "secret-snap", root=str(driver.root))
    assert snapshot.exit_code == 0, snapshot.output

    for option, name in (("fromVolume", "secret-data"), ("fromSnapshot", "secret-snap")):
        thief = driver.dir(f"thief-{option}")
        stolen = f"stolen-{option.lower()}"
        refused = driver.fail("mount", thief, pod_options(stolen, "other", **{option: name}))
        assert "namespace shop" in refused.message and "flexvol share" in refused.message, refused.output
        assert not os.path.exists(driver.backing_file(stolen))
        assert not is_mount_point(thief)
        # The owner's own pods may copy it.
        mine = driver.dir(f"mine-{option}")
        driver.ok("mount", mine, pod_options(f"copy-{option.lower()}", "shop", **{option: name}))
        with open(os.path.join(mine, "data.bin"), "rb") as handle:
            assert handle.read() == b"shop's data"
        driver.ok("unmount", mine)
