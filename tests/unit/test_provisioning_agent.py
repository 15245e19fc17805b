"""The node agent: capacity publishing and reclaim, on a temporary data root and an in-memory
API server. Volumes here are files and records only (no loop device is ever attached in unit
tests); the refusal for attached volumes is tested on real loop devices in tests/integration."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import pytest

from flexvol.core import budget, state
from flexvol.core.budget import Pool
from flexvol.core.config import Config
from flexvol.core.errors import FlexvolError, Refused
from flexvol.provisioning import ownership, reclaim
from flexvol.provisioning.agent import RETRY_SECONDS, Agent, repair_check
from flexvol.provisioning.cluster import ApiError, EventRecorder
from flexvol.provisioning.provisioner import Provisioner
from tests.helpers.fakekube import FakeCluster, fixture

VOLUME = "pvc-5b0f2c8e-3d5a-4a57-9a0e-0c6a2f3f1e11"
MiB = 1 << 20
GiB = 1 << 30


@pytest.fixture
def config(tmp_path: Path) -> Config:
    config = Config(str(tmp_path / "root"))
    state.ensure_dirs(config)
    return config


@pytest.fixture
def cluster() -> FakeCluster:
    cluster = FakeCluster()
    cluster.put_node(fixture("node-worker-1"))
    return cluster


def make_volume(config: Config, volume_id: str, size: int, written: bytes = b"",
                owner: dict | None = None) -> None:
    """A volume on disk; `owner`: the PV recorded as its owner, as the agent records it."""
    record = state.new_record(volume_id, size, "ext4")
    if owner is not None:
        for key, value in ownership.owner_fields(owner).items():
            setattr(record, key, value)
    state.save_record(config, record)
    with open(config.backing_file(volume_id), "wb") as handle:
        handle.truncate(size)
        handle.write(written)


def released_pv() -> dict:
    return fixture("pv-released-delete")


def bound(pv: dict) -> dict:
    return {**pv, "status": {"phase": "Bound"}}


def provisioner_round(cluster: FakeCluster) -> list[str]:
    """What the provisioner deletes of what the agents reclaimed."""
    return Provisioner(cluster, EventRecorder(cluster, "flexvol-provisioner")).delete_reclaimed()


def agent(cluster: FakeCluster, config: Config, **kwargs: object) -> Agent:
    return Agent(cluster, config, "worker-1", EventRecorder(cluster, "flexvol-agent", "worker-1"),
                 **kwargs)  # type: ignore[arg-type]


def test_capacity_is_published_once_per_change_and_owned_by_the_node(
        cluster: FakeCluster, config: Config) -> None:
    make_volume(config, "v1", 64 * MiB)
    node_agent = agent(cluster, config, capacity_limit=1 << 30)
    node_agent.publish_capacity()
    published = cluster.capacities["worker-1"]
    assert (published["capacityBytes"], published["committedBytes"]) == (1 << 30, 64 * MiB)
    assert published["freeBytes"] == (1 << 30) - 64 * MiB
    assert published["volumes"] == {"v1": 64 * MiB}
    assert published["metadata"]["ownerReferences"] == [{
        "apiVersion": "v1", "kind": "Node", "name": "worker-1",
        "uid": "e4c6a0de-7b1f-4a0c-b5a3-1f7d2e9c8a31"}]
    node_agent.publish_capacity()
    assert cluster.writes == ["create capacity worker-1"]
    make_volume(config, "v2", 32 * MiB)
    node_agent.publish_capacity()
    assert cluster.writes[-1] == "replace capacity worker-1"
    assert cluster.capacities["worker-1"]["committedBytes"] == 96 * MiB


def test_published_capacity_is_what_the_driver_enforces(
        cluster: FakeCluster, config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression, "the capacity budget counts the pool's size, not its free space": the agent
    published the pool's size while other data filled it."""
    make_volume(config, "v1", 64 * MiB, written=b"x" * MiB)
    found = budget.measure(config)
    # one reading for both, so that the figures compared are the same
    monkeypatch.setattr(budget, "measure", lambda config: found)
    node_agent = agent(cluster, config)
    node_agent.publish_capacity()
    published = cluster.capacities["worker-1"]
    assert published["capacityBytes"] == found.committed_bytes + found.available_bytes
    assert published["freeBytes"] == found.available_bytes
    assert found.available_bytes <= found.free_bytes - found.promised_bytes
    assert published["capacityBytes"] < found.total_bytes
    # a ratio above 1 no longer promises what is not free
    Path(config.overcommit_path).write_text("2\n")
    monkeypatch.setattr(budget, "measure", lambda config: Pool(found.path, found.total_bytes,
                                                               found.free_bytes, 2.0, found.sizes))
    node_agent.publish_capacity()
    assert cluster.capacities["worker-1"]["capacityBytes"] == published["capacityBytes"]
    assert cluster.capacities["worker-1"]["volumes"] == {"v1": 64 * MiB}


def test_small_moves_of_free_space_are_not_republished_but_a_shrink_is(
        cluster: FakeCluster, config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    free = [10 * GiB]
    monkeypatch.setattr(budget, "measure", lambda config: Pool("/p", 100 * GiB, free[0], 1.0, {}))
    node_agent = agent(cluster, config)
    node_agent.publish_capacity()
    free[0] -= 4 * MiB
    node_agent.publish_capacity()
    assert cluster.writes == ["create capacity worker-1"]
    free[0] -= 16 * MiB
    node_agent.publish_capacity()
    assert cluster.writes[-1] == "replace capacity worker-1"
    assert cluster.capacities["worker-1"]["capacityBytes"] == 10 * GiB - 20 * MiB


def test_a_pool_running_low_raises_one_node_event_per_change(
        cluster: FakeCluster, config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression, "the capacity budget counts the pool's size, not its free space": nothing
    warned before a pool ran out under its volumes."""
    sizes = {"thin": (40 * GiB, GiB)}
    free = [60 * GiB]
    monkeypatch.setattr(budget, "measure", lambda config: Pool("/var/lib/flexvol/volumes", 100 * GiB,
                                                               free[0], 1.0, sizes))
    node_agent = agent(cluster, config)
    node_agent.publish_capacity()
    assert cluster.events_for("worker-1") == []          # fine from the start: nothing to say
    free[0] = 45 * GiB
    node_agent.publish_capacity()
    assert cluster.events_for("worker-1") == []          # less free, still backed and not low
    free[0] = 20 * GiB
    node_agent.publish_capacity()
    node_agent.publish_capacity()                        # said once, not every round
    events = cluster.events_for("worker-1")
    assert len(events) == 1 and events[0][:2] == ("Warning", "FlexvolPoolUnbacked")
    assert "20Gi of free space" in events[0][2] and "39Gi" in events[0][2]
    assert "19Gi more than is free" in events[0][2]
    sizes.clear()
    free[0] = 5 * GiB
    node_agent.publish_capacity()
    assert cluster.events_for("worker-1")[-1][:2] == ("Warning", "FlexvolPoolLow")
    free[0] = 50 * GiB
    node_agent.publish_capacity()
    assert cluster.events_for("worker-1")[-1][:2] == ("Normal", "FlexvolPoolSpaceOK")
    assert len(cluster.events_for("worker-1")) == 3
    assert not any(re.search(r"\d{5,}", message) for _, _, message in cluster.events_for("worker-1"))


def test_released_volume_with_policy_delete_is_removed_and_its_pv_by_the_provisioner(
        cluster: FakeCluster, config: Config) -> None:
    make_volume(config, VOLUME, 64 * MiB)
    node_agent = agent(cluster, config)
    assert node_agent.reclaim(cluster.put_pv(bound(released_pv())), None).action == reclaim.IGNORE
    pv = cluster.put_pv(released_pv())
    decision = node_agent.reclaim(pv, cluster.get_node("worker-1"))
    assert decision.action == reclaim.DELETE
    assert not os.path.exists(config.backing_file(VOLUME))
    assert not os.path.exists(config.record_path(VOLUME))
    # The agent may not delete PVs: it says which it reclaimed, and the provisioner deletes it.
    assert list(cluster.pvs) == [VOLUME]
    assert "delete pv" not in " ".join(cluster.writes)
    assert cluster.capacities["worker-1"]["reclaimed"] == {VOLUME: pv["metadata"]["uid"]}
    assert provisioner_round(cluster) == [VOLUME]
    assert cluster.pvs == {}
    node_agent.resync()  # the PV is gone: so is the entry
    node_agent.publish_capacity()
    assert cluster.capacities["worker-1"]["reclaimed"] == {}


def test_pv_whose_volume_never_reached_the_node_is_still_deleted(
        cluster: FakeCluster, config: Config) -> None:
    pv = cluster.put_pv(released_pv())
    agent(cluster, config).reclaim(pv, cluster.get_node("worker-1"))
    assert provisioner_round(cluster) == [VOLUME]
    assert cluster.pvs == {}


def test_the_agent_records_the_owning_pv_in_the_volume_record(cluster: FakeCluster, config: Config) -> None:
    """Agent and provisioner trust: the PV the provisioner made is recorded in its volume's
    record when the agent first sees it bound, even before the first mount made the volume."""
    node_agent = agent(cluster, config)
    pv = cluster.put_pv(bound(released_pv()))
    assert node_agent.record_owner(pv) is True
    record = state.load_record(config, VOLUME)
    assert record is not None
    assert {key: getattr(record, key) for key in ownership.OWNER_FIELDS} == {
        "pv_name": VOLUME, "pv_uid": "7d8e9f00-aaaa-4bbb-8ccc-ddddeeee0001",
        "namespace": "shop", "claim": "shop/data"}
    assert (record.size_bytes, record.fs_type, record.formatted) == (1 << 30, "ext4", None)
    assert not os.path.exists(config.backing_file(VOLUME))  # the driver's first mount makes it
    assert node_agent.record_owner(pv) is False               # once
    # Not a leftover: `flexvol ls` says provisioned and repair leaves it alone.
    from flexvol.toolkit import inventory, repair

    assert inventory.view(config, VOLUME).state == "provisioned"
    assert [f for f in repair.findings(config, str(config.data_root) + "/kubelet")
            if f.volume_id == VOLUME] == []
    # A volume the driver made first gets the fields added, the rest of its record kept.
    other = bound(released_pv())
    other["metadata"] = {**other["metadata"], "name": "pvc-11111111-2222-4333-8444-555555555555",
                         "uid": "uid-2"}
    other["spec"] = {**other["spec"], "claimRef": {**other["spec"]["claimRef"], "name": "logs",
                                                   "uid": "11111111-2222-4333-8444-555555555555"},
                     "flexVolume": {**other["spec"]["flexVolume"], "options": {
                         "size": "1Gi", "volumeID": "pvc-11111111-2222-4333-8444-555555555555"}}}
    make_volume(config, "pvc-11111111-2222-4333-8444-555555555555", 64 * MiB, b"data")
    assert node_agent.record_owner(other) is True
    record = state.load_record(config, "pvc-11111111-2222-4333-8444-555555555555")
    assert record.claim == "shop/logs" and record.size_bytes == 64 * MiB


@pytest.mark.parametrize("change", ["another-node", "another-provisioner", "released", "renamed"])
def test_no_owner_is_recorded_from_a_pv_not_made_for_this_node(
        cluster: FakeCluster, config: Config, change: str) -> None:
    pv = bound(released_pv())
    if change == "another-node":
        pv["metadata"]["annotations"]["flexvol.io/node"] = "worker-2"
    elif change == "another-provisioner":
        pv["spec"]["flexVolume"]["driver"] = "other/driver"
    elif change == "released":
        pv = released_pv()  # never trusted at first sight
    else:
        pv["metadata"]["name"] = "copy"
    assert agent(cluster, config).record_owner(cluster.put_pv(pv)) is False
    assert state.load_record(config, VOLUME) is None


@pytest.mark.parametrize("copy", ["other-name", "same-name-new-uid", "unrecorded-volume"])
def test_a_copied_pv_with_the_same_volume_id_does_not_destroy_the_volume(
        cluster: FakeCluster, config: Config, copy: str) -> None:
    """Agent and provisioner trust: a copy of a PV (same volumeID, our annotation, this node,
    policy Delete), once Released, made the agent delete the volume the real PV owns."""
    original = released_pv()
    if copy == "unrecorded-volume":
        make_volume(config, VOLUME, 64 * MiB, b"precious")  # made by hand: no owner recorded
    else:
        make_volume(config, VOLUME, 64 * MiB, b"precious", owner=original)
    forged = released_pv()
    if copy == "other-name":
        forged["metadata"]["name"] = "stolen"
    else:
        forged["metadata"]["uid"] = "99999999-0000-4000-8000-000000000000"
    forged = cluster.put_pv(forged)
    node_agent = agent(cluster, config)
    node_agent.reclaim(forged, None)
    node_agent.publish_capacity()
    assert Path(config.backing_file(VOLUME)).read_bytes().startswith(b"precious")
    assert state.load_record(config, VOLUME) is not None
    assert cluster.capacities["worker-1"]["reclaimed"] == {}
    assert provisioner_round(cluster) == []
    assert forged["metadata"]["name"] in cluster.pvs
    [(kind, reason, message)] = cluster.events_for(forged["metadata"]["name"])
    assert (kind, reason) == ("Warning", "VolumeNotReclaimed")
    assert "not deleting it" in message


def test_an_owner_recorded_for_another_pv_is_kept(cluster: FakeCluster, config: Config) -> None:
    make_volume(config, VOLUME, 64 * MiB, owner=released_pv())
    forged = bound(released_pv())
    forged["metadata"]["uid"] = "99999999-0000-4000-8000-000000000000"
    assert agent(cluster, config).record_owner(cluster.put_pv(forged)) is False
    assert state.load_record(config, VOLUME).pv_uid == "7d8e9f00-aaaa-4bbb-8ccc-ddddeeee0001"
    [(_, reason, message)] = cluster.events_for(VOLUME)
    assert reason == "VolumeOwnerNotRecorded" and "belongs to PersistentVolume" in message


def test_the_agent_writes_only_its_own_nodes_capacity(cluster: FakeCluster, config: Config) -> None:
    """Agent and provisioner trust: RBAC lets every agent write every NodeCapacity object; the
    agent itself writes only its node's."""
    cluster.put_node(fixture("node-worker-2"))
    cluster.capacities["worker-2"] = {"metadata": {"name": "worker-2", "resourceVersion": "7"},
                                      "node": "worker-2", "capacityBytes": 5, "volumes": {}}
    node_agent = agent(cluster, config, capacity_limit=1 << 30)
    node_agent.publish_capacity()
    make_volume(config, "v1", MiB)
    node_agent.publish_capacity()
    assert cluster.writes == ["create capacity worker-1", "replace capacity worker-1"]
    assert cluster.capacities["worker-2"]["capacityBytes"] == 5
    with pytest.raises(FlexvolError, match="writes no other node's capacity"):
        node_agent._write_capacity(cluster.create_capacity, {"metadata": {"name": "worker-2"},
                                                             "node": "worker-2"})
    assert cluster.writes == ["create capacity worker-1", "replace capacity worker-1"]


def test_retain_keeps_volume_and_pv_and_says_so_once(cluster: FakeCluster, config: Config) -> None:
    make_volume(config, VOLUME, 64 * MiB)
    pv = fixture("pv-released-delete")
    pv["spec"]["persistentVolumeReclaimPolicy"] = "Retain"
    pv = cluster.put_pv(pv)
    node_agent = agent(cluster, config)
    node_agent.reclaim(pv, None)
    node_agent.reclaim(pv, None)
    assert os.path.exists(config.backing_file(VOLUME))
    assert list(cluster.pvs) == [VOLUME]
    assert [reason for _, reason, _ in cluster.events_for(VOLUME)] == ["VolumeRetained"]


def test_refused_deletion_keeps_the_pv_and_says_why(cluster: FakeCluster, config: Config) -> None:
    def refusing_delete(config: Config, volume_id: str) -> bool:
        raise Refused(f"volume {volume_id} is mounted at /var/lib/kubelet/pods/x; not deleting it",
                      "it is deleted once the kubelet has unmounted it")

    pv = cluster.put_pv(fixture("pv-released-delete"))
    agent(cluster, config, delete_volume=refusing_delete).reclaim(pv, None)
    assert list(cluster.pvs) == [VOLUME]
    [(kind, reason, message)] = cluster.events_for(VOLUME)
    assert (kind, reason) == ("Warning", "VolumeFailedDelete")
    assert "is mounted at /var/lib/kubelet/pods/x" in message


def test_pv_the_node_still_lists_is_left_alone(cluster: FakeCluster, config: Config) -> None:
    make_volume(config, VOLUME, 64 * MiB)
    node = fixture("node-worker-1")
    node["status"]["volumesInUse"] = [f"flexvolume-flexvol/loop/{VOLUME}"]
    pv = cluster.put_pv(fixture("pv-released-delete"))
    assert agent(cluster, config).reclaim(pv, node).action == reclaim.WAIT
    assert os.path.exists(config.backing_file(VOLUME))
    assert list(cluster.pvs) == [VOLUME]


def test_failed_pv_deletion_is_retried_at_the_next_look(cluster: FakeCluster, config: Config) -> None:
    pv = released_pv()
    make_volume(config, VOLUME, 64 * MiB, owner=pv)
    pv = cluster.put_pv(pv)
    cluster.fail("delete_pv", ApiError("503 the server is currently unable to handle the request"))
    node_agent = agent(cluster, config)
    node_agent.reclaim(pv, None)
    assert not os.path.exists(config.backing_file(VOLUME))
    assert provisioner_round(cluster) == []
    assert list(cluster.pvs) == [VOLUME]
    node_agent.reclaim(pv, None)  # already reclaimed: nothing to do, the entry stays published
    assert provisioner_round(cluster) == [VOLUME]
    assert cluster.pvs == {}


def test_a_pv_released_while_watching_is_reclaimed_in_the_same_round(
        cluster: FakeCluster, config: Config) -> None:
    make_volume(config, VOLUME, 64 * MiB)
    cluster.put_pv(bound(released_pv()))
    cluster.pv_watch.clear()
    released = cluster.put_pv(released_pv(), "MODIFIED")
    cluster.pvs[VOLUME] = bound(released)  # the list still says Bound: the owner is recorded
    agent(cluster, config).step(watch_seconds=1)
    assert not os.path.exists(config.backing_file(VOLUME))
    assert cluster.capacities["worker-1"]["reclaimed"] == {VOLUME: released["metadata"]["uid"]}
    assert provisioner_round(cluster) == []  # the provisioner checks the PV: not Released yet
    cluster.pvs[VOLUME] = released
    assert provisioner_round(cluster) == [VOLUME]
    assert "create capacity worker-1" in cluster.writes


def test_a_node_without_a_data_root_yet_publishes_its_pool(cluster: FakeCluster, tmp_path: Path) -> None:
    fresh = Config(str(tmp_path / "fresh"))
    agent(cluster, fresh, capacity_limit=1 << 30).publish_capacity()
    assert cluster.capacities["worker-1"]["capacityBytes"] == 1 << 30
    assert cluster.capacities["worker-1"]["volumes"] == {}


def test_repair_findings_become_node_events_and_nothing_is_changed(
        cluster: FakeCluster, config: Config) -> None:
    make_volume(config, "v1", 64 * MiB)

    def check(config: Config) -> list[str]:
        return ["leaked-loop /dev/loop7: no mount uses it", "stale-mount /mnt/x: its device is gone"]

    found = agent(cluster, config, repair_check=check).report_findings()
    assert len(found) == 2
    assert cluster.events_for("worker-1") == [("Warning", "FlexvolRepairNeeded", line) for line in found]
    assert cluster.events[0]["metadata"]["namespace"] == "default"
    assert os.path.exists(config.backing_file("v1"))
    assert agent(cluster, config).report_findings() == []


@pytest.mark.parametrize("apply", [False, True])
def test_the_toolkits_repair_reports_at_start_and_acts_only_when_asked(
        cluster: FakeCluster, config: Config, tmp_path: Path, apply: bool) -> None:
    state.save_record(config, state.new_record("lost", 64 * MiB, "ext4"))  # its file is gone
    check = repair_check(str(tmp_path / "kubelet"), apply=apply)
    [line] = agent(cluster, config, repair_check=check).report_findings()
    assert line.startswith("record-without-file")
    assert ("repaired:" in line) is apply
    assert (state.load_record(config, "lost") is None) is apply
    assert cluster.events_for("worker-1") == [("Warning", "FlexvolRepairNeeded", line)]


def test_a_failed_round_pauses_before_the_next(cluster: FakeCluster, config: Config) -> None:
    # Without the pause, an unreachable API server made the agent retry in a busy loop.
    class Stop(threading.Event):
        def __init__(self) -> None:
            super().__init__()
            self.waits: list[float | None] = []

        def wait(self, timeout: float | None = None) -> bool:
            self.waits.append(timeout)
            self.set()
            return True

    node_agent = agent(cluster, config)
    assert node_agent.step(watch_seconds=1) is True
    cluster.fail("list_pvs", ApiError("cannot reach the API server: connection refused"))
    assert node_agent.step(watch_seconds=1) is False
    cluster.fail("list_pvs", ApiError("cannot reach the API server: connection refused"))
    stop = Stop()
    node_agent.run(stop, watch_seconds=30)
    assert stop.waits == [RETRY_SECONDS]
