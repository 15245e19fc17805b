"""The cluster-side controller: watch claims, and for each one of ours that is ready, place it
on a node and create its PersistentVolume. Decisions come from claims.py and placement.py.

Restart-safe: the PV's name derives from the claim's uid, so creating it again is answered
AlreadyExists and changes nothing; whatever a killed provisioner left half-done the next one
finds in the claim and the PV list.

It also deletes the PVs whose volume a node's agent reclaimed (listed in that node's
NodeCapacity object), after checking each is a Released PV of ours placed on that node: the
agents, one per node, may not delete PVs themselves. Every write (PV create, PV delete) is
preceded by a fresh look at the leader lease; a replica that lost it writes nothing.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable

from flexvol.core import faults
from flexvol.provisioning import claims, names, ownership, placement, sources
from flexvol.provisioning.cluster import (
    AlreadyExists,
    ApiError,
    Cluster,
    Conflict,
    EventRecorder,
    Gone,
    NotFound,
    log,
)
from flexvol.provisioning.leader import LeaderElector

RESYNC_SECONDS = 60


class Provisioner:
    def __init__(self, cluster: Cluster, recorder: EventRecorder, *,
                 name: str = names.PROVISIONER_NAME,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cluster = cluster
        self.recorder = recorder
        self.name = name
        self.clock = clock
        self.resource_version = ""
        self.resynced_at: float | None = None
        # The elector of the round being run (step); None when driven directly (tests, tools).
        self.elector: LeaderElector | None = None

    def still_leading(self) -> bool:
        return self.elector is None or self.elector.confirm()

    # ---- one claim ---------------------------------------------------------------------------

    def sync_claim(self, claim: dict, pvs: list[dict] | None = None) -> claims.ClaimDecision:
        """Decide about one claim and carry the decision out; returns the decision."""
        if pvs is None:
            pvs, _ = self.cluster.list_pvs()
        class_name = claims.claim_class_name(claim)
        storage_class = self.cluster.get_storage_class(class_name) if class_name else None
        existing = {pv["metadata"]["name"] for pv in pvs}
        decision = claims.decide_claim(claim, storage_class, self.name, existing)
        if decision.action == claims.REFUSE:
            self._event(claim, "Warning", decision.reason, decision.message)
        elif decision.action == claims.WAIT:
            self._event(claim, "Normal", "WaitingForNode" if decision.request else "Waiting",
                        decision.message)
        elif decision.action == claims.PROVISION:
            assert decision.request is not None
            self._provision(claim, decision, pvs)
        return decision

    def _provision(self, claim: dict, decision: claims.ClaimDecision, pvs: list[dict]) -> None:
        request = decision.request
        assert request is not None
        source = None
        if request.data_source is not None:
            source = self._source(claim, request, decision.selected_node, pvs)
            if source is None:
                return
            # A copy keeps its source's filesystem and is made on its source's node.
            request = dataclasses.replace(request, fs_type=source.fs_type)
            decision = dataclasses.replace(decision, request=request, selected_node=source.node)
        if decision.selected_node:
            node = self.cluster.get_node(decision.selected_node)
            if node is None:
                self._event(claim, "Warning", "ProvisioningFailed",
                            f"the selected node {decision.selected_node} does not exist")
                return
            budget = placement.node_budget(decision.selected_node,
                                           self.cluster.get_capacity(decision.selected_node),
                                           pvs, self.name)
            chosen = placement.check_node(decision.selected_node, budget, request.size_bytes)
            if source is not None and chosen.node:
                chosen = placement.Placement(chosen.node, f"placed on {chosen.node}, beside its source")
        else:
            nodes = {node["metadata"]["name"]: node for node in self.cluster.list_nodes()}
            capacities = {item["metadata"]["name"]: item for item in self.cluster.list_capacities()}
            # Only nodes whose agent published a budget can take a volume.
            budgets = {name: placement.node_budget(name, capacities[name], pvs, self.name)
                       for name in nodes if name in capacities}
            cordoned = {name for name, node in nodes.items()
                        if (node.get("spec") or {}).get("unschedulable")}
            chosen = placement.choose_node(request.size_bytes, budgets, cordoned)
            node = nodes.get(chosen.node) if chosen.node else None
        if chosen.node is None or node is None:
            self._event(claim, "Warning", "ProvisioningFailed", chosen.message)
            return
        labels = node["metadata"].get("labels") or {}
        hostname = labels.get(names.HOSTNAME_LABEL)
        if not hostname:
            self._event(claim, "Warning", "ProvisioningFailed",
                        f"node {chosen.node} has no {names.HOSTNAME_LABEL} label, which the PV's "
                        "node affinity needs")
            return
        pv = claims.build_pv(request, claim, chosen.node, hostname, self.name,
                             source.driver_options if source else None)
        # Test hooks (faults.py): the end-to-end suite kills the provisioner at these two steps
        # and checks that a restart converges on one PV.
        faults.checkpoint("provision:pv-create")
        if not self.still_leading():
            log.warning("not creating PV %s: no longer the leader", request.pv_name)
            return
        try:
            self.cluster.create_pv(pv)
        except AlreadyExists:
            log.info("PV %s exists already (an earlier attempt made it)", request.pv_name)
        except ApiError as error:
            self._event(claim, "Warning", "ProvisioningFailed",
                        f"creating PersistentVolume {request.pv_name} failed: {error}; retrying")
            return
        faults.checkpoint("provision:pv-created")
        pvs.append(pv)
        copied = f", a copy of {source.what} made at its first mount" if source else ""
        self._event(claim, "Normal", "ProvisioningSucceeded",
                    f"created PersistentVolume {request.pv_name} ({request.size}, {request.fs_type}"
                    f"{copied}): {chosen.message}")

    def _source(self, claim: dict, request: claims.VolumeRequest, selected_node: str | None,
                pvs: list[dict]) -> sources.Source | None:
        """The claim's data source resolved and checked, or None after an event saying why."""
        assert request.data_source is not None
        try:
            source = sources.resolve(self.cluster, claim, request.data_source, pvs, self.name)
            sources.check_fits(source, request, request.class_fs_type, selected_node)
        except sources.SourceProblem as problem:
            self._event(claim, "Warning", "ProvisioningFailed", str(problem))
            return None
        return source

    def _event(self, claim: dict, event_type: str, reason: str, message: str) -> None:
        self.recorder.record(claim, "PersistentVolumeClaim", event_type, reason, message)

    # ---- PVs whose volume an agent reclaimed ----------------------------------------------------

    def delete_reclaimed(self) -> list[str]:
        """Delete the PVs the agents list as reclaimed, each checked first; the names deleted."""
        wanted = [(item["metadata"]["name"], name, uid) for item in self.cluster.list_capacities()
                  for name, uid in sorted((item.get("reclaimed") or {}).items())]
        if not wanted:
            return []
        pvs = {pv["metadata"]["name"]: pv for pv in self.cluster.list_pvs()[0]}
        deleted = []
        for node, name, uid in wanted:
            pv = pvs.get(name)
            if pv is None or pv["metadata"].get("uid") != uid:
                continue  # deleted already; or a new PV has the name now, which the agent never saw
            problem = reclaimable(pv, node, self.name)
            if problem:
                self.recorder.record(pv, "PersistentVolume", "Warning", "VolumeNotDeleted",
                                     f"the agent on {node} lists it as reclaimed, but {problem}")
                continue
            if not self.still_leading():
                log.warning("not deleting PV %s: no longer the leader", name)
                return deleted
            try:
                self.cluster.delete_pv(name, uid)
            except (NotFound, Conflict):
                continue
            except ApiError as error:
                log.warning("deleting PV %s: %s; retried at the next round", name, error)
                continue
            log.info("deleted PV %s: its volume was reclaimed on %s", name, node)
            self.recorder.forget(uid)
            deleted.append(name)
        return deleted

    # ---- the loop ----------------------------------------------------------------------------

    def resync(self) -> str:
        """Examine every claim once; returns the resourceVersion to watch from."""
        items, resource_version = self.cluster.list_claims()
        pvs, _ = self.cluster.list_pvs()
        for claim in items:
            self._sync_safely(claim, pvs)
        self.resynced_at = self.clock()
        return resource_version

    def _sync_safely(self, claim: dict, pvs: list[dict] | None = None) -> None:
        try:
            self.sync_claim(claim, pvs)
        except ApiError as error:
            log.warning("claim %s: %s; retried at the next resync", claims.claim_key(claim), error)

    def step(self, elector: LeaderElector, watch_seconds: int) -> bool:
        """One round: renew leadership, resync when due, then follow claim changes for up to
        `watch_seconds`. Returns whether this replica led the round."""
        if not elector.try_acquire_or_renew():
            self.resynced_at = None  # a new leader starts from a full list
            return False
        self.elector = elector
        try:
            self.delete_reclaimed()
        except ApiError as error:
            log.warning("PVs to delete: %s; retried at the next round", error)
        try:
            due = self.resynced_at is None or self.clock() - self.resynced_at >= RESYNC_SECONDS
            if due or not self.resource_version:
                self.resource_version = self.resync()
            for kind, claim in self.cluster.watch_claims(self.resource_version, watch_seconds):
                self.resource_version = claim["metadata"].get("resourceVersion") or self.resource_version
                if kind == "DELETED":
                    self.recorder.forget(claim["metadata"].get("uid", ""))
                    continue
                if not elector.is_leader():
                    break
                self._sync_safely(claim)
        except Gone:
            self.resource_version = ""
        except ApiError as error:
            log.warning("watching claims: %s", error)
            self.resource_version = ""
        return True

    def run(self, elector: LeaderElector, stop: threading.Event, watch_seconds: int = 5) -> None:
        while not stop.is_set():
            if not self.step(elector, watch_seconds):
                stop.wait(watch_seconds)


def reclaimable(pv: dict, node: str, provisioner: str) -> str | None:
    """Why the provisioner must not delete `pv` for the agent of `node`, or None: only a
    Released PV with policy Delete that it made and placed on that very node."""
    problem = ownership.not_made_by(pv, provisioner)
    if problem:
        return problem
    name = pv["metadata"]["name"]
    if claims.node_of_pv(pv) != node:
        return f"PersistentVolume {name} was placed on {claims.node_of_pv(pv)}, not on {node}"
    if (pv.get("status") or {}).get("phase") != "Released":
        return f"PersistentVolume {name} is not Released"
    policy = (pv.get("spec") or {}).get("persistentVolumeReclaimPolicy")
    if policy != "Delete":
        return f"PersistentVolume {name} has reclaim policy {policy}"
    return None
