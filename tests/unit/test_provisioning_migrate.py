"""flexvol migrate-pv against an in-memory API server with the PV controller's binding rules
(tests/helpers/fakebinder.py) and a data root of the test's own (no loop devices)."""

from __future__ import annotations

import os

import pytest

from flexvol.core import state
from flexvol.core.config import Config
from flexvol.provisioning import migrator as migrator_module
from flexvol.provisioning.migration import RELEASE_UID, MigrationRefused, steps
from flexvol.provisioning.migrator import Migrator, state_path
from tests.helpers.fakebinder import BinderCluster, bound_pair, csi_node

VOLUME = "pvc-5b0f2c8e-3d5a-4a57-9a0e-0c6a2f3f1e11"
PV = VOLUME
DATA = b"flexvol data that must survive" * 100


class Killed(Exception):
    pass


class Time:
    """The migrator's clock and sleep; each sleep lets the controllers run once."""

    def __init__(self, cluster: BinderCluster, controllers: bool = True, claims: bool = True) -> None:
        self.now = 0.0
        self.cluster = cluster
        self.controllers = controllers
        self.claims = claims

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        if self.controllers:
            self.cluster.sync(claims=self.claims)


@pytest.fixture
def cluster() -> BinderCluster:
    cluster = BinderCluster()
    cluster.put_node(csi_node("worker-1"))
    cluster.put_node(csi_node("worker-2"))
    bound_pair(cluster, VOLUME)
    cluster.writes.clear()
    return cluster


@pytest.fixture
def volume(config: Config) -> Config:
    record = state.new_record(VOLUME, 1 << 30, "ext4")
    record.formatted = {"fs_type": "ext4", "uuid": "5e0c", "at": "2026-12-06T10:00:00Z"}
    record.pv_name, record.claim, record.namespace = PV, "shop/data", "shop"
    state.save_record(config, record)
    with open(config.backing_file(VOLUME), "wb") as file:
        file.write(DATA)
    return config


def migrator(cluster: BinderCluster, config: Config, clock: Time | None = None,
             node: str = "worker-1", timeout: float = 30) -> Migrator:
    clock = clock or Time(cluster)
    return Migrator(cluster, config, node, timeout=timeout, sleep=clock.sleep, clock=clock.clock)


def assert_migrated(cluster: BinderCluster, config: Config) -> None:
    claim = cluster.claims[("shop", "data")]
    pv = cluster.pvs[PV]
    assert pv["spec"]["csi"] == {"driver": "loop.flexvol.io", "volumeHandle": VOLUME, "fsType": "ext4",
                                 "volumeAttributes": {"fsType": "ext4"}}
    assert "flexVolume" not in pv["spec"]
    assert pv["spec"]["claimRef"]["uid"] == claim["metadata"]["uid"]
    assert pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"] == [{"matchExpressions": [
        {"key": "topology.flexvol.io/node", "operator": "In", "values": ["worker-1"]}]}]
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"  # the old PV's, kept
    assert (pv["spec"]["capacity"], pv["spec"]["accessModes"], pv["spec"]["storageClassName"]) == (
        {"storage": "1Gi"}, ["ReadWriteOnce"], "flexvol-local")
    assert pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == "loop.flexvol.io"
    assert claim["status"]["phase"] == "Bound" and claim["spec"]["volumeName"] == PV
    record = state.load_record(config, VOLUME)
    assert record is not None
    assert (record.csi_name, record.created_by) == (VOLUME, "csi")
    assert record.formatted is not None and record.formatted["uuid"] == "5e0c"
    with open(config.backing_file(VOLUME), "rb") as file:
        assert file.read() == DATA
    assert not os.path.exists(state_path(config, PV))


def test_a_bound_flexvolume_pv_becomes_a_csi_pv_and_its_claim_is_bound_again(
        cluster: BinderCluster, volume: Config) -> None:
    message = migrator(cluster, volume).run(PV)
    assert "claim shop/data is Bound" in message
    assert_migrated(cluster, volume)
    # Released (Retain, foreign UID) before the delete: a Bound PV's delete waits forever on
    # kubernetes.io/pv-protection.
    assert cluster.writes == [f"replace pv {PV}", f"delete pv {PV}", f"create pv {PV}"]


def test_the_old_pv_is_retained_and_released_before_it_is_deleted(
        cluster: BinderCluster, volume: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    def checkpoint(step: str) -> None:
        pv = cluster.pvs.get(PV)
        seen.append((step, pv and pv["spec"]["persistentVolumeReclaimPolicy"],
                     pv and pv["spec"]["claimRef"]["uid"]))

    monkeypatch.setattr(migrator_module, "checkpoint", checkpoint)
    migrator(cluster, volume).run(PV)
    assert seen[1] == ("migrate:released", "Retain", RELEASE_UID)
    assert [step for step, *_ in seen] == ["migrate:planned", "migrate:released", "migrate:deleted",
                                           "migrate:converted", "migrate:created"]


def test_a_pv_kept_by_its_finalizer_is_waited_for_and_a_rerun_finishes(
        cluster: BinderCluster, volume: Config) -> None:
    # kube-controller-manager does not run: the old PV stays Terminating past the timeout.
    with pytest.raises(MigrationRefused) as refused:
        migrator(cluster, volume, Time(cluster, controllers=False)).run(PV)
    assert "still being deleted" in refused.value.message
    assert "pv-protection" in refused.value.hint
    assert os.path.exists(state_path(volume, PV))
    assert "migrate" not in str(state.load_record(volume, VOLUME).csi_name)
    # Now it runs; a rerun goes on from there.
    assert "is Bound" in migrator(cluster, volume).run(PV)
    assert_migrated(cluster, volume)


def test_a_claim_still_lost_is_waited_for_and_a_rerun_finishes(
        cluster: BinderCluster, volume: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    # The claims' sync runs once, right after the release (the claim goes Lost), then does not
    # come round again within the timeout: the claim stays Lost.
    monkeypatch.setattr(migrator_module, "checkpoint",
                        lambda step: cluster.sync() if step == "migrate:released" else None)
    with pytest.raises(MigrationRefused) as refused:
        migrator(cluster, volume, Time(cluster, claims=False)).run(PV)
    assert "claim shop/data is Lost, not yet Bound" in refused.value.message
    assert "pvclaimbinder-sync-period" in refused.value.hint
    assert cluster.pvs[PV]["spec"]["csi"]["volumeHandle"] == VOLUME
    assert os.path.exists(state_path(volume, PV))
    cluster.writes.clear()
    assert "is Bound" in migrator(cluster, volume).run(PV)
    assert cluster.writes == []  # only waited
    assert_migrated(cluster, volume)


@pytest.mark.parametrize("step", ["migrate:planned", "migrate:released", "migrate:deleted",
                                  "migrate:converted", "migrate:created"])
def test_a_run_killed_at_every_step_is_finished_by_the_next(
        cluster: BinderCluster, volume: Config, monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    def checkpoint(reached: str) -> None:
        if reached == step:
            raise Killed(step)

    monkeypatch.setattr(migrator_module, "checkpoint", checkpoint)
    with pytest.raises(Killed):
        migrator(cluster, volume).run(PV)
    cluster.sync()
    monkeypatch.setattr(migrator_module, "checkpoint", lambda reached: None)
    migrator(cluster, volume).run(PV)
    assert_migrated(cluster, volume)
    assert cluster.writes.count(f"create pv {PV}") == 1


def test_a_migrated_pv_is_left_alone(cluster: BinderCluster, volume: Config) -> None:
    migrator(cluster, volume).run(PV)
    cluster.writes.clear()
    assert "nothing to do" in migrator(cluster, volume).run(PV)
    assert cluster.writes == []


def test_the_dry_run_plan_changes_nothing(cluster: BinderCluster, volume: Config) -> None:
    plan, started = migrator(cluster, volume).plan(PV)
    assert plan is not None and not started
    text = "\n".join(steps(plan))
    assert "Retain (was Delete)" in text and "volumeHandle " + VOLUME in text
    assert cluster.writes == [] and not os.path.exists(state_path(volume, PV))
    assert state.load_record(volume, VOLUME).csi_name is None


def _not_flexvol(cluster: BinderCluster, config: Config) -> None:
    pv = cluster.pvs[PV]
    del pv["spec"]["flexVolume"]
    pv["spec"]["hostPath"] = {"path": "/srv"}


def _pod_uses_claim(cluster: BinderCluster, config: Config) -> None:
    cluster.pods[("shop", "web-0")] = {"metadata": {"name": "web-0", "namespace": "shop"},
                                       "spec": {"volumes": [{"name": "d", "persistentVolumeClaim":
                                                             {"claimName": "data"}}]},
                                       "status": {"phase": "Pending"}}


def _no_claim_ref(cluster: BinderCluster, config: Config) -> None:
    del cluster.pvs[PV]["spec"]["claimRef"]


def _claim_ref_without_namespace(cluster: BinderCluster, config: Config) -> None:
    del cluster.pvs[PV]["spec"]["claimRef"]["namespace"]


def _claim_pending(cluster: BinderCluster, config: Config) -> None:
    cluster.claims[("shop", "data")]["status"]["phase"] = "Pending"


def _claim_lost(cluster: BinderCluster, config: Config) -> None:
    cluster.claims[("shop", "data")]["status"]["phase"] = "Lost"


def _node_unknown(cluster: BinderCluster, config: Config) -> None:
    del cluster.pvs[PV]["metadata"]["annotations"]["flexvol.io/node"]
    cluster.nodes["worker-1"]["metadata"]["labels"]["kubernetes.io/hostname"] = "renamed"


def _other_node(cluster: BinderCluster, config: Config) -> None:
    cluster.pvs[PV]["metadata"]["annotations"]["flexvol.io/node"] = "worker-2"


def _kubelet_uses_it(cluster: BinderCluster, config: Config) -> None:
    cluster.nodes["worker-1"]["status"]["volumesInUse"] = [f"flexvolume-flexvol/loop/{PV}"]


def _no_csi_plugin(cluster: BinderCluster, config: Config) -> None:
    del cluster.nodes["worker-1"]["metadata"]["labels"]["topology.flexvol.io/node"]


def _not_in_pool(cluster: BinderCluster, config: Config) -> None:
    os.unlink(config.backing_file(VOLUME))


def _mounted(cluster: BinderCluster, config: Config) -> None:
    migrator_module.in_use = lambda config, volume_id: ["mounted at /var/lib/kubelet/pods/x"]


@pytest.mark.parametrize(("change", "expected"), [
    (_not_flexvol, "is not a flexvol FlexVolume PV"),
    (_pod_uses_claim, "is used by pod(s) web-0"),
    (_no_claim_ref, "is not bound to a claim"),
    (_claim_ref_without_namespace, "claim ?/data of PersistentVolume"),
    (_claim_pending, "is not bound to PersistentVolume"),
    (_claim_lost, "is not bound to PersistentVolume"),
    (_node_unknown, "cannot tell which node"),
    (_other_node, "the volume is on node worker-2, and this is node worker-1"),
    (_kubelet_uses_it, "still lists PersistentVolume"),
    (_no_csi_plugin, "no topology.flexvol.io/node label"),
    (_not_in_pool, "is not in this node's pool"),
    (_mounted, "is in use: mounted at"),
])
def test_refusals_change_nothing(cluster: BinderCluster, volume: Config, monkeypatch: pytest.MonkeyPatch,
                                 change, expected: str) -> None:
    monkeypatch.setattr(migrator_module, "in_use", migrator_module.in_use)
    change(cluster, volume)
    before = {name: pv["metadata"]["resourceVersion"] for name, pv in cluster.pvs.items()}
    with pytest.raises(MigrationRefused) as refused:
        migrator(cluster, volume).run(PV)
    assert expected in refused.value.message
    assert cluster.writes == []
    assert {name: pv["metadata"]["resourceVersion"] for name, pv in cluster.pvs.items()} == before
    assert not os.path.exists(state_path(volume, PV))
    record = state.load_record(volume, VOLUME)
    assert record is None or record.csi_name is None


def test_a_pod_that_starts_mid_migration_stops_the_rerun_before_the_new_pv(
        cluster: BinderCluster, volume: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    def checkpoint(reached: str) -> None:
        if reached == "migrate:deleted":
            raise Killed(reached)

    monkeypatch.setattr(migrator_module, "checkpoint", checkpoint)
    with pytest.raises(Killed):
        migrator(cluster, volume).run(PV)
    _pod_uses_claim(cluster, volume)
    monkeypatch.setattr(migrator_module, "checkpoint", lambda reached: None)
    with pytest.raises(MigrationRefused, match="used by pod"):
        migrator(cluster, volume).run(PV)
    assert state.load_record(volume, VOLUME).csi_name is None
    assert f"create pv {PV}" not in cluster.writes
