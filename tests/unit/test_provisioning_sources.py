"""Claims with a data source (a clone of a claim, a restore of a VolumeSnapshot) against the
in-memory API server: where the PV goes, what its options name, and the refusals."""

from __future__ import annotations

import copy

import pytest

from flexvol.core.options import FROM_SNAPSHOT, FROM_VOLUME
from flexvol.provisioning import claims, names, sources
from flexvol.provisioning.cluster import EventRecorder
from flexvol.provisioning.provisioner import Provisioner
from tests.helpers.fakekube import FakeCluster, fixture

GiB = 1 << 30
SOURCE_UID = "5b0f2c8e-3d5a-4a57-9a0e-0c6a2f3f1e11"
SOURCE_PV = f"pvc-{SOURCE_UID}"
COPY_UID = "7c7c7c7c-0000-4000-8000-000000000001"
COPY_PV = f"pvc-{COPY_UID}"
SNAPSHOT_GROUP = "snapshot.storage.k8s.io"


def immediate_class() -> dict:
    storage_class = copy.deepcopy(fixture("sc-wffc-delete"))
    storage_class["metadata"]["name"] = "flexvol-now"
    storage_class["volumeBindingMode"] = "Immediate"
    return storage_class


@pytest.fixture
def cluster() -> FakeCluster:
    cluster = FakeCluster()
    cluster.put_class(fixture("sc-wffc-delete"))
    cluster.put_class(fixture("sc-immediate-retain-xfs"))
    cluster.put_class(immediate_class())
    cluster.put_node(fixture("node-worker-1"))
    cluster.put_node(fixture("node-worker-2"))
    for node in ("worker-1", "worker-2"):
        cluster.capacities[node] = {"metadata": {"name": node, "resourceVersion": "1"}, "node": node,
                                    "capacityBytes": 10 * GiB, "volumes": {}}
    # claim shop/data, bound to a PV of ours on worker-1 whose 1Gi ext4 volume exists there
    source = fixture("claim-bound")
    cluster.put_claim(source)
    cluster.claims[("shop", "data")]["metadata"]["uid"] = SOURCE_UID
    pv = claims.build_pv(claims.volume_request(source, fixture("sc-wffc-delete")), source,
                         "worker-1", "worker-1.lab.example", names.PROVISIONER_NAME)
    pv["status"] = {"phase": "Bound"}
    cluster.put_pv(pv)
    cluster.capacities["worker-1"]["volumes"] = {SOURCE_PV: GiB}
    return cluster


def new_claim(source: dict, *, size: str = "1Gi", class_name: str = "flexvol-now",
              selected: str = "", ref: bool = False) -> dict:
    claim = copy.deepcopy(fixture("claim-immediate"))
    claim["metadata"].update(name="data-copy", uid=COPY_UID)
    if selected:
        claim["metadata"]["annotations"][names.SELECTED_NODE_ANNOTATION] = selected
    claim["spec"]["storageClassName"] = class_name
    claim["spec"]["resources"]["requests"]["storage"] = size
    claim["spec"]["dataSourceRef" if ref else "dataSource"] = source
    return claim


def from_claim(name: str = "data") -> dict:
    return {"kind": "PersistentVolumeClaim", "name": name}


def from_snapshot(name: str = "snap") -> dict:
    return {"apiGroup": SNAPSHOT_GROUP, "kind": "VolumeSnapshot", "name": name}


def pre_provisioned(cluster: FakeCluster, handle: str = "data-monday", *, node: str = "worker-2",
                    ready: bool = True) -> None:
    """What `flexvol snapshot manifest` prints, applied; and the agent of `node` listing it."""
    cluster.volume_snapshots[("shop", "snap")] = {
        "apiVersion": f"{SNAPSHOT_GROUP}/v1", "kind": "VolumeSnapshot",
        "metadata": {"name": "snap", "namespace": "shop", "uid": "snap-uid"},
        "spec": {"source": {"volumeSnapshotContentName": "content-1"}}}
    cluster.snapshot_contents["content-1"] = {
        "apiVersion": f"{SNAPSHOT_GROUP}/v1", "kind": "VolumeSnapshotContent",
        "metadata": {"name": "content-1"},
        "spec": {"driver": names.PROVISIONER_NAME, "deletionPolicy": "Retain",
                 "source": {"snapshotHandle": handle},
                 "volumeSnapshotRef": {"name": "snap", "namespace": "shop"}}}
    if ready:
        cluster.capacities[node]["snapshots"] = {
            handle: {"volume": "data-1", "sizeBytes": GiB, "fsType": "ext4"}}


def sync(cluster: FakeCluster, claim: dict) -> claims.ClaimDecision:
    controller = Provisioner(cluster, EventRecorder(cluster, "flexvol-provisioner"))
    return controller.sync_claim(cluster.put_claim(claim))


def last_event(cluster: FakeCluster) -> tuple[str, str, str]:
    return cluster.events_for("data-copy")[-1]


def test_a_clone_of_a_claim_is_placed_beside_its_source(cluster: FakeCluster) -> None:
    sync(cluster, new_claim(from_claim(), size="2Gi"))
    pv = cluster.pvs[COPY_PV]
    assert pv["metadata"]["annotations"][names.NODE_ANNOTATION] == "worker-1"
    terms = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"][0]["values"] == ["worker-1.lab.example"]
    flex = pv["spec"]["flexVolume"]
    assert flex["fsType"] == "ext4"
    assert flex["options"] == {"volumeID": COPY_PV, "size": "2Gi", FROM_VOLUME: SOURCE_PV}
    kind, reason, message = last_event(cluster)
    assert (kind, reason) == ("Normal", "ProvisioningSucceeded")
    assert f"a copy of volume {SOURCE_PV} of claim shop/data" in message
    assert "placed on worker-1, beside its source" in message


def test_a_clone_via_data_source_ref_works_too(cluster: FakeCluster) -> None:
    sync(cluster, new_claim(from_claim(), ref=True))
    assert cluster.pvs[COPY_PV]["spec"]["flexVolume"]["options"][FROM_VOLUME] == SOURCE_PV


def test_a_clone_smaller_than_its_source_is_refused(cluster: FakeCluster) -> None:
    sync(cluster, new_claim(from_claim(), size="512Mi"))
    assert COPY_PV not in cluster.pvs
    kind, reason, message = last_event(cluster)
    assert (kind, reason) == ("Warning", "ProvisioningFailed")
    assert "asks for 512Mi but volume" in message and "ask at least that much" in message


def test_a_clone_whose_pod_went_to_another_node_is_refused_saying_why(cluster: FakeCluster) -> None:
    sync(cluster, new_claim(from_claim(), class_name="flexvol-local", selected="worker-2"))
    assert COPY_PV not in cluster.pvs
    message = last_event(cluster)[2]
    assert "the scheduler chose node worker-2" in message
    assert "is on worker-1" in message and "schedule the pod on worker-1" in message


def test_a_clone_whose_pod_went_to_the_source_node_is_made(cluster: FakeCluster) -> None:
    sync(cluster, new_claim(from_claim(), class_name="flexvol-local", selected="worker-1"))
    assert cluster.pvs[COPY_PV]["metadata"]["annotations"][names.NODE_ANNOTATION] == "worker-1"


def test_a_clone_of_an_unbound_claim_waits_until_it_is_bound(cluster: FakeCluster) -> None:
    cluster.claims[("shop", "data")]["status"] = {"phase": "Pending"}
    claim = new_claim(from_claim())
    sync(cluster, claim)
    assert COPY_PV not in cluster.pvs
    assert "is not Bound yet" in last_event(cluster)[2]
    cluster.claims[("shop", "data")]["status"] = {"phase": "Bound"}
    sync(cluster, claim)
    assert COPY_PV in cluster.pvs


@pytest.mark.parametrize(("change", "words"), [
    (lambda c: c.claims.pop(("shop", "data")), "claim shop/data does not exist"),
    (lambda c: c.pvs[SOURCE_PV]["spec"]["flexVolume"].update(driver="other/driver"),
     "only those can be cloned"),
    (lambda c: c.capacities["worker-1"].update(volumes={}), "no pod has mounted it"),
])
def test_a_clone_of_what_is_no_flexvol_volume_here_is_refused(cluster: FakeCluster, change,
                                                                words: str) -> None:
    change(cluster)
    sync(cluster, new_claim(from_claim()))
    assert COPY_PV not in cluster.pvs
    assert words in last_event(cluster)[2]


def test_a_clone_keeps_its_sources_filesystem_and_refuses_a_class_asking_another(
        cluster: FakeCluster) -> None:
    sync(cluster, new_claim(from_claim(), class_name="flexvol-xfs", size="2Gi"))
    assert COPY_PV not in cluster.pvs
    assert "asks for xfs, but volume" in last_event(cluster)[2]


def test_a_pre_provisioned_snapshot_is_restored_on_the_node_that_holds_it(cluster: FakeCluster) -> None:
    pre_provisioned(cluster)
    sync(cluster, new_claim(from_snapshot()))
    pv = cluster.pvs[COPY_PV]
    assert pv["metadata"]["annotations"][names.NODE_ANNOTATION] == "worker-2"
    assert pv["spec"]["flexVolume"]["options"][FROM_SNAPSHOT] == "data-monday"
    assert "a copy of snapshot data-monday (VolumeSnapshot shop/snap)" in last_event(cluster)[2]


def test_a_snapshot_bound_by_the_snapshot_controller_is_read_from_its_status(cluster: FakeCluster) -> None:
    pre_provisioned(cluster)
    snapshot = cluster.volume_snapshots[("shop", "snap")]
    snapshot["spec"]["source"] = {"persistentVolumeClaimName": "data"}
    snapshot["status"] = {"boundVolumeSnapshotContentName": "content-1", "readyToUse": True}
    content = cluster.snapshot_contents["content-1"]
    content["spec"]["source"] = {"volumeHandle": SOURCE_PV}
    content["status"] = {"snapshotHandle": "data-monday", "readyToUse": True}
    sync(cluster, new_claim(from_snapshot()))
    assert cluster.pvs[COPY_PV]["spec"]["flexVolume"]["options"][FROM_SNAPSHOT] == "data-monday"


def test_without_the_snapshot_crds_the_claim_stays_pending_saying_so(cluster: FakeCluster) -> None:
    cluster.volume_snapshots = None
    decision = sync(cluster, new_claim(from_snapshot()))
    assert decision.action == claims.PROVISION
    assert cluster.pvs.keys() == {SOURCE_PV}
    assert "VolumeSnapshot CRDs are not installed" in last_event(cluster)[2]


def test_a_snapshot_no_agent_lists_as_ready_is_not_restored(cluster: FakeCluster) -> None:
    # the content says ready, but no node's agent found a ready flexvol record of that name
    pre_provisioned(cluster, ready=False)
    cluster.snapshot_contents["content-1"]["status"] = {"readyToUse": True}
    sync(cluster, new_claim(from_snapshot()))
    assert COPY_PV not in cluster.pvs
    assert "is not ready on any node this provisioner serves" in last_event(cluster)[2]


@pytest.mark.parametrize(("change", "words"), [
    (lambda c: c.volume_snapshots.clear(), "VolumeSnapshot shop/snap does not exist"),
    (lambda c: c.snapshot_contents.clear(), "VolumeSnapshotContent content-1, which does not exist"),
    (lambda c: c.volume_snapshots[("shop", "snap")]["spec"].update(source={}),
     "bound to no VolumeSnapshotContent"),
    (lambda c: c.snapshot_contents["content-1"]["spec"].update(
        volumeSnapshotRef={"name": "other", "namespace": "shop"}), "is bound to VolumeSnapshot shop/other"),
    (lambda c: c.snapshot_contents["content-1"]["spec"]["source"].update(snapshotHandle="A/B"),
     "no flexvol snapshot name"),
    (lambda c: c.capacities["worker-1"].update(snapshots=c.capacities["worker-2"]["snapshots"]),
     "exists on several nodes (worker-1, worker-2)"),
    (lambda c: c.capacities["worker-2"]["snapshots"]["data-monday"].update(block=True), "raw block"),
])
def test_snapshot_sources_that_cannot_be_restored_are_refused(cluster: FakeCluster, change,
                                                              words: str) -> None:
    pre_provisioned(cluster)
    change(cluster)
    sync(cluster, new_claim(from_snapshot()))
    assert COPY_PV not in cluster.pvs
    kind, reason, message = last_event(cluster)
    assert (kind, reason) == ("Warning", "ProvisioningFailed")
    assert words in message


@pytest.mark.parametrize(("source", "words"), [
    ({"kind": "ConfigMap", "name": "x"}, "flexvol restores VolumeSnapshots"),
    ({"apiGroup": "example.com", "kind": "VolumeSnapshot", "name": "x"}, "flexvol restores"),
    ({"kind": "PersistentVolumeClaim", "name": "x", "namespace": "other"}, "namespace other"),
])
def test_other_data_sources_are_refused_before_anything_is_read(cluster: FakeCluster, source: dict,
                                                                 words: str) -> None:
    decision = sync(cluster, new_claim(source, ref=True))
    assert decision.action == claims.REFUSE
    assert words in decision.message
    assert COPY_PV not in cluster.pvs


def test_a_restarted_provisioner_makes_one_pv_for_a_clone(cluster: FakeCluster) -> None:
    claim = new_claim(from_claim())
    sync(cluster, claim)
    sync(cluster, claim)
    Provisioner(cluster, EventRecorder(cluster, "p")).sync_claim(cluster.claims[("shop", "data-copy")],
                                                                pvs=list(cluster.pvs.values())[:1])
    assert [write for write in cluster.writes if COPY_PV in write] == [f"create pv {COPY_PV}"]


def test_requested_reads_no_source_as_none() -> None:
    assert sources.requested(fixture("claim-immediate")) is None


def test_a_missing_snapshot_is_none_and_a_missing_crd_is_said_apart() -> None:
    import json

    from kubernetes.client.exceptions import ApiException

    from flexvol.provisioning import kube

    def answer(status: int, body: dict):
        def call(*_args: object) -> dict:
            error = ApiException(status=status, reason="Not Found")
            error.body = json.dumps(body)
            raise error
        return call

    missing_object = {"kind": "Status", "reason": "NotFound", "details": {
        "name": "snap", "group": SNAPSHOT_GROUP, "kind": "volumesnapshots"}}
    found = kube.snapshot_object(answer(404, missing_object), "g", "v1", "shop", "volumesnapshots", "snap")
    assert found is None
    missing_resource = {"kind": "Status", "reason": "NotFound", "message": "the server could not find "
                        "the requested resource", "details": {}}
    with pytest.raises(sources.MissingApi):
        kube.snapshot_object(answer(404, missing_resource), "g", "v1", "shop", "volumesnapshots", "snap")
    with pytest.raises(kube.ApiError):
        kube.snapshot_object(answer(403, {"message": "forbidden"}), "g", "v1", "shop", "volumesnapshots", "x")
