"""The provisioner controller and its leader election, against an in-memory API server."""

from __future__ import annotations

import copy

import pytest

from flexvol.core import faults
from flexvol.provisioning import claims, names
from flexvol.provisioning.cluster import ApiError, Conflict, EventRecorder, Gone
from flexvol.provisioning.leader import LeaderElector
from flexvol.provisioning.provisioner import Provisioner
from tests.helpers.fakekube import FakeCluster, fixture

GiB = 1 << 30
UID = "5b0f2c8e-3d5a-4a57-9a0e-0c6a2f3f1e11"
PV_NAME = f"pvc-{UID}"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def cluster() -> FakeCluster:
    return populate(FakeCluster())


def populate(cluster: FakeCluster) -> FakeCluster:
    cluster.put_class(fixture("sc-wffc-delete"))
    cluster.put_class(fixture("sc-immediate-retain-xfs"))
    cluster.put_node(fixture("node-worker-1"))
    cluster.put_node(fixture("node-worker-2"))
    cluster.capacities["worker-1"] = fixture("capacity-worker-1")  # 10Gi, 2Gi committed
    return cluster


def provisioner(cluster: FakeCluster, clock: Clock | None = None) -> Provisioner:
    return Provisioner(cluster, EventRecorder(cluster, "flexvol-provisioner"), clock=clock or Clock())


def publish(cluster: FakeCluster, node: str, capacity: int, **volumes: int) -> None:
    cluster.capacities[node] = {"metadata": {"name": node, "resourceVersion": "1"}, "node": node,
                                "capacityBytes": capacity, "volumes": volumes}


def test_claim_waits_for_the_scheduler_then_gets_a_pv_on_the_selected_node(cluster: FakeCluster) -> None:
    controller = provisioner(cluster)
    controller.sync_claim(cluster.put_claim(fixture("claim-wffc-unscheduled")))
    assert cluster.pvs == {}
    claim = cluster.put_claim(fixture("claim-wffc-selected"), "MODIFIED")
    decision = controller.sync_claim(claim)
    assert decision.action == claims.PROVISION
    pv = cluster.pvs[PV_NAME]
    expected = claims.build_pv(decision.request, claim, "worker-1", "worker-1.lab.example", "flexvol/loop")
    assert {key: pv[key] for key in ("apiVersion", "kind", "spec")} == \
        {key: expected[key] for key in ("apiVersion", "kind", "spec")}
    assert pv["metadata"]["annotations"] == expected["metadata"]["annotations"]
    (kind, _, message), = [e for e in cluster.events_for("data") if e[1] == "ProvisioningSucceeded"]
    assert kind == "Normal"
    assert message == (f"created PersistentVolume {PV_NAME} (1Gi, ext4): placed on worker-1, "
                       "the node the scheduler selected")


def test_provisioning_twice_or_after_a_restart_makes_one_pv(cluster: FakeCluster) -> None:
    claim = cluster.put_claim(fixture("claim-wffc-selected"))
    provisioner(cluster).sync_claim(claim)
    provisioner(cluster).sync_claim(claim)
    # a replica that listed PVs before the first one created it: AlreadyExists is success
    provisioner(cluster).sync_claim(claim, pvs=[])
    assert list(cluster.pvs) == [PV_NAME]
    assert cluster.writes == [f"create pv {PV_NAME}"]


def test_claim_larger_than_the_selected_nodes_budget_gets_the_shortfall(cluster: FakeCluster) -> None:
    claim = fixture("claim-wffc-selected")
    claim["spec"]["resources"]["requests"]["storage"] = "20Gi"
    controller = provisioner(cluster)
    controller.sync_claim(cluster.put_claim(claim))
    controller.sync_claim(cluster.put_claim(claim, "MODIFIED"))
    assert cluster.pvs == {}
    # said once, not at every look
    assert cluster.events_for("data") == [(
        "Warning", "ProvisioningFailed",
        "no room for 20Gi on the selected node: worker-1: 8Gi free of 10Gi, 12Gi short")]


def test_selected_node_without_an_agent_is_named(cluster: FakeCluster) -> None:
    claim = fixture("claim-wffc-selected")
    claim["metadata"]["annotations"][names.SELECTED_NODE_ANNOTATION] = "worker-2"
    provisioner(cluster).sync_claim(cluster.put_claim(claim))
    assert cluster.pvs == {}
    [(_, _, message)] = cluster.events_for("data")
    assert "worker-2: no capacity published (is the flexvol agent running there?)" in message


def test_selected_node_that_does_not_exist_is_refused(cluster: FakeCluster) -> None:
    claim = fixture("claim-wffc-selected")
    claim["metadata"]["annotations"][names.SELECTED_NODE_ANNOTATION] = "gone-1"
    provisioner(cluster).sync_claim(cluster.put_claim(claim))
    assert cluster.events_for("data") == [
        ("Warning", "ProvisioningFailed", "the selected node gone-1 does not exist")]


def test_immediate_claims_go_where_there_is_room_counting_pvs_just_made(cluster: FakeCluster) -> None:
    publish(cluster, "worker-1", 10 * GiB, **{"manual-1": 6 * GiB})   # 4Gi free
    publish(cluster, "worker-2", 8 * GiB)                             # 8Gi free
    first = fixture("claim-immediate")                                # 3Gi each
    second = copy.deepcopy(first)
    second["metadata"].update(name="logs-2", uid="9c1d7e44-81f0-4b8e-a3c2-7d95b1f0aa03")
    third = copy.deepcopy(first)
    third["metadata"].update(name="logs-3", uid="9c1d7e44-81f0-4b8e-a3c2-7d95b1f0aa04")
    for claim in (first, second, third):
        cluster.put_claim(claim)
    provisioner(cluster).resync()
    placed = {pv["spec"]["claimRef"]["name"]: pv["metadata"]["annotations"][names.NODE_ANNOTATION]
              for pv in cluster.pvs.values()}
    # worker-2 (8Gi free) takes the first; then 5Gi vs 4Gi free: worker-2 again; then worker-1
    assert placed == {"logs": "worker-2", "logs-2": "worker-2", "logs-3": "worker-1"}
    terms = [pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"] for pv in cluster.pvs.values()]
    nodes = {term[0]["matchExpressions"][0]["values"][0] for term in terms}
    assert nodes == {"worker-2", "worker-1.lab.example"}
    [(_, _, message)] = [e for e in cluster.events_for("logs") if e[1] == "ProvisioningSucceeded"]
    assert message.endswith("placed on worker-2, which had 8Gi free of 8Gi")


def test_cordoned_node_takes_no_immediate_claim(cluster: FakeCluster) -> None:
    publish(cluster, "worker-2", 100 * GiB)
    node = fixture("node-worker-2")
    node["spec"]["unschedulable"] = True
    cluster.put_node(node)
    provisioner(cluster).sync_claim(cluster.put_claim(fixture("claim-immediate")))
    assert cluster.pvs[f"pvc-{fixture('claim-immediate')['metadata']['uid']}"][
        "metadata"]["annotations"][names.NODE_ANNOTATION] == "worker-1"


def test_refused_claim_gets_a_warning_and_no_pv(cluster: FakeCluster) -> None:
    claim = fixture("claim-wffc-selected")
    claim["spec"]["accessModes"] = ["ReadWriteMany"]
    provisioner(cluster).sync_claim(cluster.put_claim(claim))
    assert cluster.pvs == {}
    [(kind, reason, message)] = cluster.events_for("data")
    assert (kind, reason) == ("Warning", "ProvisioningFailed")
    assert "ReadWriteMany" in message and "one node's loop device" in message


def test_failed_create_is_reported_and_retried(cluster: FakeCluster) -> None:
    claim = cluster.put_claim(fixture("claim-wffc-selected"))
    cluster.fail("create_pv", ApiError("500 etcdserver: request timed out"))
    controller = provisioner(cluster)
    controller.sync_claim(claim)
    assert cluster.pvs == {}
    assert "request timed out; retrying" in cluster.events_for("data")[-1][2]
    controller.sync_claim(claim)
    assert list(cluster.pvs) == [PV_NAME]


# ---- the loop and leader election ------------------------------------------------------------

def elector(cluster: FakeCluster, identity: str, clock: Clock) -> LeaderElector:
    return LeaderElector(cluster, "kube-system", "flexvol", identity, lease_seconds=15,
                         clock=clock, wall_clock=clock)


def test_only_the_leader_provisions_and_a_follower_takes_over_an_expired_lease(cluster: FakeCluster) -> None:
    clock = Clock()
    first, second = provisioner(cluster, clock), provisioner(cluster, clock)
    first_elector, second_elector = elector(cluster, "a", clock), elector(cluster, "b", clock)
    assert first.step(first_elector, 5) is True
    assert second.step(second_elector, 5) is False
    cluster.put_claim(fixture("claim-wffc-selected"))
    assert second.step(second_elector, 5) is False
    assert cluster.pvs == {}
    assert first.step(first_elector, 5) is True          # the watch hands over the claim
    assert list(cluster.pvs) == [PV_NAME]
    clock.now += 10
    assert second.step(second_elector, 5) is False       # renewed 10s ago: still held
    clock.now += 6
    assert second.step(second_elector, 5) is True        # 16s without renewal: taken over
    lease = cluster.leases[("kube-system", "flexvol")]["spec"]
    assert (lease["holderIdentity"], lease["leaseTransitions"]) == ("b", 1)
    assert first_elector.is_leader() is False
    assert first.step(first_elector, 5) is False
    assert list(cluster.pvs) == [PV_NAME]


def test_losing_a_race_for_the_lease_is_not_leading(cluster: FakeCluster) -> None:
    clock = Clock()
    a, b = elector(cluster, "a", clock), elector(cluster, "b", clock)
    assert a.try_acquire_or_renew()
    assert b.try_acquire_or_renew() is False
    clock.now += 20
    # b sees the lease expired, but another replica writes it first: b's update conflicts
    cluster.fail("replace_lease", Conflict("the object has been modified"))
    assert b.try_acquire_or_renew() is False
    assert b.is_leader() is False
    assert cluster.leases[("kube-system", "flexvol")]["spec"]["holderIdentity"] == "a"


def test_a_leader_that_cannot_renew_stops_leading_before_the_lease_expires(cluster: FakeCluster) -> None:
    clock = Clock()
    a = elector(cluster, "a", clock)
    assert a.try_acquire_or_renew()
    clock.now += 5
    cluster.fail("get_lease", ApiError("cannot reach the API server"))
    assert a.try_acquire_or_renew() is True     # 5s since the last renewal: still safe
    clock.now += 6
    cluster.fail("get_lease", ApiError("cannot reach the API server"))
    assert a.try_acquire_or_renew() is False    # 11s: another replica may take it at 15s


def test_expired_watch_relists(cluster: FakeCluster) -> None:
    clock = Clock()
    controller = provisioner(cluster, clock)
    lead = elector(cluster, "a", clock)
    controller.step(lead, 5)
    cluster.fail("watch_claims", Gone("410 too old resource version"))
    controller.step(lead, 5)
    assert controller.resource_version == ""
    # a claim that arrived unseen during the gap is found by the relist
    cluster.put_claim(fixture("claim-wffc-selected"))
    cluster.claim_watch.clear()
    controller.step(lead, 5)
    assert list(cluster.pvs) == [PV_NAME]


def test_an_api_outage_during_a_resync_is_survived(cluster: FakeCluster) -> None:
    clock = Clock()
    controller = provisioner(cluster, clock)
    lead = elector(cluster, "a", clock)
    cluster.put_claim(fixture("claim-wffc-selected"))
    cluster.fail("list_claims", ApiError("cannot reach the API server"))
    assert controller.step(lead, 5) is True
    assert cluster.pvs == {}
    cluster.claim_watch.clear()
    controller.step(lead, 5)
    assert list(cluster.pvs) == [PV_NAME]


def test_a_leader_whose_lease_runs_out_mid_watch_stops_acting() -> None:
    clock = Clock()

    class SlowWatch(FakeCluster):
        """A watch that takes 11s to hand out its second event (lease: 15s, margin: 10s)."""

        def watch_claims(self, resource_version: str, timeout_seconds: int):
            for number, event in enumerate(super().watch_claims(resource_version, timeout_seconds)):
                if number == 1:
                    clock.now += 11
                yield event

    slow = populate(SlowWatch())
    controller, lead = provisioner(slow, clock), elector(slow, "a", clock)
    controller.step(lead, 5)
    first = fixture("claim-wffc-selected")
    second = copy.deepcopy(first)
    second["metadata"].update(name="data-2", uid="5b0f2c8e-3d5a-4a57-9a0e-0c6a2f3f1e12")
    slow.put_claim(first)
    slow.put_claim(second)
    controller.step(lead, 5)
    assert list(slow.pvs) == [PV_NAME]


def test_the_test_hooks_mark_the_steps_around_the_pv_creation(cluster: FakeCluster,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # The end-to-end suite kills the provisioner at these steps (FLEXVOL_TEST_KILL_AT): the first
    # before anything is written, the second with the PV made but not yet reported.
    seen: list[tuple[str, list[str], list[str]]] = []

    def checkpoint(step: str) -> None:
        seen.append((step, sorted(cluster.pvs), [e[1] for e in cluster.events_for("data")]))

    monkeypatch.setattr(faults, "checkpoint", checkpoint)
    provisioner(cluster).sync_claim(cluster.put_claim(fixture("claim-wffc-selected")))
    assert seen == [("provision:pv-create", [], []), ("provision:pv-created", [PV_NAME], [])]
    assert [e[1] for e in cluster.events_for("data")] == ["ProvisioningSucceeded"]


# ---- agent and provisioner trust: PV deletion and the lease before each write ----------------

def reclaimed_by(cluster: FakeCluster, node: str, **pvs: str) -> None:
    cluster.capacities[node] = {"metadata": {"name": node, "resourceVersion": "1"}, "node": node,
                                "capacityBytes": 10 * GiB, "volumes": {}, "reclaimed": pvs}


@pytest.mark.parametrize("change", ["none", "bound", "retain", "other-node", "other-provisioner",
                                    "renamed", "other-uid"])
def test_only_a_released_pv_of_ours_on_the_reporting_node_is_deleted(cluster: FakeCluster,
                                                                        change: str) -> None:
    """Agent and provisioner trust: the agents may not delete PVs; the provisioner deletes
    those an agent reclaimed, and only a Released PV with policy Delete that it made and placed
    on that agent's node (an agent cannot get other PVs deleted by listing them)."""
    pv = fixture("pv-released-delete")
    uid = pv["metadata"]["uid"]
    if change == "bound":
        pv["status"]["phase"] = "Bound"
    elif change == "retain":
        pv["spec"]["persistentVolumeReclaimPolicy"] = "Retain"
    elif change == "other-node":
        pv["metadata"]["annotations"][names.NODE_ANNOTATION] = "worker-2"
    elif change == "other-provisioner":
        pv["metadata"]["annotations"][names.PROVISIONED_BY_ANNOTATION] = "rancher.io/local-path"
    elif change == "renamed":
        pv["metadata"]["name"] = "stolen"
    stored = cluster.put_pv(pv)
    name = stored["metadata"]["name"]
    reclaimed_by(cluster, "worker-1", **{name: "another-uid" if change == "other-uid" else uid})
    deleted = provisioner(cluster).delete_reclaimed()
    if change == "none":
        assert deleted == [PV_NAME] and cluster.pvs == {}
    else:
        assert deleted == [] and list(cluster.pvs) == [name]
        assert not any(write.startswith("delete pv") for write in cluster.writes)


class TakenOver(FakeCluster):
    """Another replica takes the lease over while this one is mid-round (between its renewal
    and its write), as a long resync or watch allows."""

    take_over_on = "watch_claims"

    def _take_over(self) -> None:
        for lease in self.leases.values():
            lease["spec"]["holderIdentity"] = "b"
            lease["metadata"]["resourceVersion"] += "0"

    def watch_claims(self, resource_version: str, timeout_seconds: int):
        if self.take_over_on == "watch_claims":
            self._take_over()
        return super().watch_claims(resource_version, timeout_seconds)

    def list_claims(self):
        if self.take_over_on == "list_claims":
            self._take_over()
        return super().list_claims()

    def list_pvs(self):
        if self.take_over_on == "list_pvs":
            self._take_over()
        return super().list_pvs()


@pytest.mark.parametrize("where", ["watch_claims", "list_claims"])
def test_a_replica_that_lost_the_lease_mid_round_creates_no_pv(where: str) -> None:
    """Agent and provisioner trust: the provisioner checked its lease once a round and then
    wrote for the whole round, also after another replica had taken the lease over."""
    clock = Clock()
    cluster = populate(TakenOver())
    controller, lead = provisioner(cluster, clock), elector(cluster, "a", clock)
    cluster.take_over_on = ""
    assert controller.step(lead, 5) is True
    cluster.put_claim(fixture("claim-wffc-selected"))
    if where == "list_claims":
        cluster.claim_watch.clear()
        controller.resynced_at = None  # the round resyncs: the claim comes from the list
    cluster.take_over_on = where
    controller.step(lead, 5)
    assert cluster.pvs == {}
    assert lead.is_leader() is False


def test_a_replica_that_lost_the_lease_deletes_no_pv() -> None:
    clock = Clock()
    cluster = populate(TakenOver())
    cluster.take_over_on = ""
    controller, lead = provisioner(cluster, clock), elector(cluster, "a", clock)
    assert controller.step(lead, 5) is True
    stored = cluster.put_pv(fixture("pv-released-delete"))
    reclaimed_by(cluster, "worker-1", **{PV_NAME: stored["metadata"]["uid"]})
    cluster.take_over_on = "list_pvs"
    controller.step(lead, 5)
    assert list(cluster.pvs) == [PV_NAME]
    # once b's lease has run out, a leads again and deletes it
    cluster.take_over_on = ""
    assert controller.step(lead, 5) is False
    clock.now += 16
    assert controller.step(lead, 5) is True
    assert cluster.pvs == {}
