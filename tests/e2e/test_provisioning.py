"""Dynamic provisioning on the real cluster (issue 8): `flexvol provisioner` and `flexvol agent`
run as host processes against the cluster's API server; a StorageClass and a claim are all the
scenarios write."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from flexvol.core.quantity import format_bytes, parse_quantity
from tests.e2e import sidecars
from tests.e2e.claims import (
    DF_SCRIPT,
    describe,
    grow_to_400mi,
    wait_bound,
    wait_file,
    wait_running,
)
from tests.e2e.csi import install_snapshot_crds
from tests.e2e.harness import DRIVER_NAME, Cluster, wait_for
from tests.e2e.pods import claim, claim_pod, provisioned_class
from tests.e2e.provisioning import (
    BUDGET_BYTES,
    CRD,
    backing_file,
    capacity,
    flexvol,
    lease_renewal,
    pvs_for_claim,
    reasons,
    release,
    start_agent,
    start_provisioner,
    stop_controller,
    volume_gone,
    wait_capacity,
    wait_event,
    wait_provisioner_rounds,
    wait_reclaimed,
)

LOCAL = "flexvol-local"  # WaitForFirstConsumer, Delete, ext4
PROVISIONER = "flexvol-provisioner"
AGENT = "flexvol-agent"


@pytest.fixture(scope="module")
def provisioning(cluster: Cluster) -> Iterator[Cluster]:
    """The cluster with the NodeCapacity CRD, a node agent and a provisioner running."""
    cluster.kubectl("apply", "-f", str(CRD))
    cluster.kubectl("wait", "--for=condition=established", "--timeout=60s",
                    "crd/nodecapacities.flexvol.io")
    start_agent(cluster)
    start_provisioner(cluster)
    try:
        published = wait_capacity(cluster)
        assert published["capacityBytes"] == BUDGET_BYTES, published
        yield cluster
    finally:
        for name in ("provisioner", "agent"):
            stop_controller(cluster, name)


def claim_uid(cluster: Cluster, name: str) -> str:
    return cluster.get("pvc", name)["metadata"]["uid"]


def test_a_claim_waits_for_its_pod_gets_a_pinned_volume_and_goes_away_with_it(provisioning: Cluster) -> None:
    cluster = provisioning
    cluster.apply(provisioned_class(LOCAL), claim("dynamic", size="64Mi", storage_class=LOCAL))
    uid = claim_uid(cluster, "dynamic")
    volume = f"pvc-{uid}"

    # No pod yet: Kubernetes waits for a consumer, and so does the provisioner.
    waiting = ((PROVISIONER, "Waiting"), ("persistentvolume-controller", "WaitForFirstConsumer"))
    for component, reason in waiting:
        wait_event(cluster, "PersistentVolumeClaim", "dynamic", component, reason)
    assert cluster.get("pvc", "dynamic")["status"]["phase"] == "Pending"
    assert pvs_for_claim(cluster, uid) == []
    assert not backing_file(cluster, volume).exists()

    cluster.apply(claim_pod("dynamic-app", 'echo "made by the provisioner" > /data/message', "dynamic"))
    bound = wait_bound(cluster, "dynamic")
    [pv] = pvs_for_claim(cluster, uid)
    assert bound["spec"]["volumeName"] == pv["metadata"]["name"] == volume
    flex = pv["spec"]["flexVolume"]
    assert flex["driver"] == DRIVER_NAME and flex["fsType"] == "ext4", flex
    assert uid in flex["options"]["volumeID"] and flex["options"]["size"] == "64Mi", flex
    assert pv["spec"]["capacity"] == {"storage": "64Mi"}
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    assert pv["spec"]["claimRef"]["name"] == "dynamic" and pv["spec"]["claimRef"]["uid"] == uid
    hostname = cluster.get("node", cluster.node_name)["metadata"]["labels"]["kubernetes.io/hostname"]
    assert pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"] == [{"matchExpressions": [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": [hostname]}]}]
    assert pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == DRIVER_NAME
    selected = cluster.get("pvc", "dynamic")["metadata"]["annotations"]["volume.kubernetes.io/selected-node"]
    assert selected == cluster.node_name
    succeeded = wait_event(cluster, "PersistentVolumeClaim", "dynamic", PROVISIONER, "ProvisioningSucceeded")
    assert volume in succeeded["message"] and cluster.node_name in succeeded["message"], succeeded

    wait_running(cluster, "dynamic-app")
    assert wait_file(cluster, volume, "message") == "made by the provisioner\n"
    assert cluster.get("pod", "dynamic-app")["spec"]["nodeName"] == cluster.node_name
    calls = [(c["verb"], c["status"]) for c in cluster.calls() if c["volume"] == volume]
    assert calls == [("mount", "Success")], calls

    release(cluster, "dynamic-app", "dynamic", volume)
    wait_reclaimed(cluster, volume, volume)
    assert not backing_file(cluster, volume).exists()
    assert str(backing_file(cluster, volume)) not in cluster.loops().values()
    assert [c["verb"] for c in cluster.calls() if c["volume"] == volume] == ["mount", "unmount"]


def test_a_retain_class_keeps_the_volume_and_its_data(provisioning: Cluster) -> None:
    cluster = provisioning
    cluster.apply(provisioned_class("flexvol-retain", reclaim="Retain"),
                  claim("kept", size="64Mi", storage_class="flexvol-retain"))
    marker = "kept after the claim is gone " + claim_uid(cluster, "kept")
    cluster.apply(claim_pod("kept-app", f'echo "{marker}" > /data/message && sync', "kept"))
    bound = wait_bound(cluster, "kept")
    volume = pv_name = bound["spec"]["volumeName"]
    wait_running(cluster, "kept-app")
    assert wait_file(cluster, volume, "message") == marker + "\n"

    release(cluster, "kept-app", "kept", volume)
    wait_for("the PV to be Released", lambda: cluster.get("pv", pv_name)["status"]["phase"] == "Released",
             120, on_timeout=lambda: describe(cluster, "pv", pv_name))
    # The agent saw it Released and decided to keep it; the volume and its bytes are there.
    retained = wait_event(cluster, "PersistentVolume", pv_name, AGENT, "VolumeRetained")
    assert "Retain" in retained["message"], retained
    assert cluster.get("pv", pv_name)["status"]["phase"] == "Released"
    backing = backing_file(cluster, volume)
    assert marker.encode() in backing.read_bytes()
    assert str(backing) not in cluster.loops().values()

    # Clean up as an operator would: the PV, then the volume with the toolkit.
    cluster.kubectl("delete", "pv", pv_name)
    cluster.run([flexvol(cluster), "delete", volume, "--yes", "--root", str(cluster.data_root)])
    assert volume_gone(cluster, volume)
    assert "VolumeFailedDelete" not in reasons(cluster, "PersistentVolume", pv_name, AGENT)


def test_a_claim_past_every_nodes_budget_stays_pending_with_the_shortfall(provisioning: Cluster) -> None:
    cluster = provisioning
    # Nothing is left on the node from earlier scenarios: the whole budget is free.
    published = wait_capacity(cluster, committed=0)
    request = "3Gi"
    cluster.apply(provisioned_class("flexvol-now", binding="Immediate"),
                  claim("too-big", size=request, storage_class="flexvol-now"))
    failed = wait_event(cluster, "PersistentVolumeClaim", "too-big", PROVISIONER, "ProvisioningFailed")
    free = published["capacityBytes"]
    short = parse_quantity(request) - free
    assert failed["type"] == "Warning"
    assert failed["message"] == (f"no node has room for {format_bytes(parse_quantity(request))}: "
                                 f"{cluster.node_name}: {format_bytes(free)} free of "
                                 f"{format_bytes(free)}, {format_bytes(short)} short"), failed
    assert cluster.get("pvc", "too-big")["status"]["phase"] == "Pending"
    assert pvs_for_claim(cluster, claim_uid(cluster, "too-big")) == []
    cluster.kubectl("delete", "pvc", "too-big")


def test_a_provisioner_killed_mid_way_and_restarted_makes_one_pv(provisioning: Cluster) -> None:
    cluster = provisioning
    trace = cluster.base / "provisioner-steps"
    stop_controller(cluster, "provisioner")
    cluster.apply(provisioned_class(LOCAL), claim("restarted", size="64Mi", storage_class=LOCAL))
    uid = claim_uid(cluster, "restarted")
    cluster.apply(claim_pod("restarted-app", 'echo "after two kills" > /data/message', "restarted"))

    try:
        # Killed first after deciding but before creating the PV, then right after creating it.
        for kill_at, pvs_after in (("provision:pv-create", 0), ("provision:pv-created", 1)):
            proc = start_provisioner(cluster, f"provisioner-killed-at-{kill_at.split(':')[1]}", env={
                "FLEXVOL_TEST_HOOKS": "1", "FLEXVOL_TEST_KILL_AT": kill_at, "FLEXVOL_TEST_TRACE": str(trace)})
            wait_for(f"the provisioner to die at {kill_at}", lambda p=proc: p.poll() is not None, 90,
                     on_timeout=lambda: describe(cluster, "pvc", "restarted"))
            assert proc.returncode == -signal.SIGKILL
            assert trace.read_text().splitlines()[-1] == kill_at
            assert len(pvs_for_claim(cluster, uid)) == pvs_after
        assert "ProvisioningSucceeded" not in reasons(cluster, "PersistentVolumeClaim", "restarted",
                                                      PROVISIONER)
    finally:
        # The ordinary provisioner again, also for the scenarios after this one if it failed.
        last_round = lease_renewal(cluster)
        start_provisioner(cluster)
    wait_provisioner_rounds(cluster, since=last_round)
    bound = wait_bound(cluster, "restarted")
    wait_running(cluster, "restarted-app")
    [pv] = pvs_for_claim(cluster, uid)
    assert bound["spec"]["volumeName"] == pv["metadata"]["name"] == f"pvc-{uid}"
    volume = pv["spec"]["flexVolume"]["options"]["volumeID"]
    assert wait_file(cluster, volume, "message") == "after two kills\n"

    release(cluster, "restarted-app", "restarted", volume)
    wait_reclaimed(cluster, pv["metadata"]["name"], volume)


def test_a_provisioned_xfs_claim_grows_in_the_running_pod(provisioning: Cluster) -> None:
    cluster = provisioning
    cluster.apply(provisioned_class("flexvol-xfs", fs_type="xfs", expandable=True),
                  claim("growing", size="300Mi", storage_class="flexvol-xfs"))
    cluster.apply(claim_pod("growing-app", DF_SCRIPT, "growing"))
    volume = pv_name = wait_bound(cluster, "growing")["spec"]["volumeName"]
    assert cluster.get("pv", pv_name)["spec"]["flexVolume"]["fsType"] == "xfs"
    wait_running(cluster, "growing-app")
    wait_file(cluster, volume, "df")
    [mount_point] = cluster.volume_mounts(volume)
    calls_before = len(cluster.calls())
    grow_to_400mi(cluster, "growing", pv_name, volume, mount_point)
    calls = [c for c in cluster.calls()[calls_before:] if c["volume"] == volume]
    verbs = [c["verb"] for c in calls]
    assert "expandfs" in verbs and "expandvolume" not in verbs, verbs
    assert all(c["status"] == "Success" for c in calls if c["verb"] == "expandfs"), calls
    assert Path(backing_file(cluster, volume)).stat().st_size >= parse_quantity("400Mi")

    release(cluster, "growing-app", "growing", volume)
    wait_reclaimed(cluster, pv_name, volume)
    assert "VolumeFailedDelete" not in reasons(cluster, "PersistentVolume", pv_name, AGENT)


def test_claims_cloned_from_a_claim_and_restored_from_a_snapshot_read_its_bytes(
        provisioning: Cluster) -> None:
    """Issue 18 item 4: a claim whose dataSource is another claim, and one whose dataSource is a
    pre-provisioned VolumeSnapshot of a flexvol snapshot, start with the source's bytes."""
    cluster = provisioning
    install_snapshot_crds(cluster, sidecars.build())
    cluster.apply(provisioned_class(LOCAL), provisioned_class("flexvol-now", binding="Immediate"),
                  claim("origin", size="64Mi", storage_class=LOCAL))
    marker = "bytes of the origin " + claim_uid(cluster, "origin")
    cluster.apply(claim_pod("origin-app", f'echo "{marker}" > /data/message && sync', "origin"))
    origin = wait_bound(cluster, "origin")["spec"]["volumeName"]
    wait_running(cluster, "origin-app")
    assert wait_file(cluster, origin, "message") == marker + "\n"

    # The snapshot, taken while the pod keeps the volume mounted, and its two objects.
    root = ["--root", str(cluster.data_root)]
    cluster.run([flexvol(cluster), "snapshot", "create", origin, "origin-snap", *root])
    printed = cluster.run([flexvol(cluster), "snapshot", "manifest", "origin-snap", "-n", "default",
                           *root]).stdout
    cluster.kubectl("apply", "-f", "-", input=printed)
    wait_for("the agent to publish snapshot origin-snap",
             lambda: "origin-snap" in (capacity(cluster).get("snapshots") or {}), 60,
             on_timeout=lambda: json.dumps(capacity(cluster)) + cluster.log_tail("agent"))

    clone = claim("cloned", size="96Mi", storage_class="flexvol-now")
    clone["spec"]["dataSource"] = {"kind": "PersistentVolumeClaim", "name": "origin"}
    restored = claim("restored", size="64Mi", storage_class=LOCAL)
    restored["spec"]["dataSource"] = {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot",
                                      "name": "origin-snap"}
    cluster.apply(clone, restored)
    volumes = {}
    sources = (("cloned", "fromVolume", origin), ("restored", "fromSnapshot", "origin-snap"))
    for name, option, source in sources:
        cluster.apply(claim_pod(f"{name}-app", "cat /data/message > /data/read && sync", name))
        volume = volumes[name] = wait_bound(cluster, name, timeout=120)["spec"]["volumeName"]
        pv = cluster.get("pv", volume)
        assert pv["spec"]["flexVolume"]["options"][option] == source, pv["spec"]["flexVolume"]
        assert pv["metadata"]["annotations"]["flexvol.io/node"] == cluster.node_name
        wait_running(cluster, f"{name}-app")
        assert wait_file(cluster, volume, "read") == marker + "\n"
        record = json.loads((cluster.data_root / "records" / f"{volume}.json").read_text())
        assert record["restored_from"][option.replace("from", "from_").lower()] == source, record
    assert Path(backing_file(cluster, volumes["cloned"])).stat().st_size == parse_quantity("96Mi")

    for name, volume in (("cloned", volumes["cloned"]), ("restored", volumes["restored"]),
                         ("origin", origin)):
        release(cluster, f"{name}-app", name, volume)
        wait_reclaimed(cluster, volume, volume)
    cluster.kubectl("delete", "volumesnapshot", "origin-snap")
    cluster.kubectl("delete", "volumesnapshotcontent", "flexvol-origin-snap")
    cluster.run([flexvol(cluster), "snapshot", "delete", "origin-snap", "--yes", *root])
