"""The node-side controller: publish this node's capacity and reclaim Released volumes that
this provisioner placed here. Decisions come from reclaim.py; the deletion itself is
`delete_volume` (deletion.py: the toolkit's delete, which refuses while the volume is in use).

Least trust: the agent writes only its own node's NodeCapacity object, records in each volume's
record which PV owns it (ownership.py) and deletes a volume only for that PV. It never deletes
PersistentVolume objects: it lists the PVs whose volume it reclaimed in its NodeCapacity object
("reclaimed": name -> UID), and the provisioner deletes those PVs after checking them again, so
no node's credentials can delete PVs cluster-wide.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from flexvol.core import budget, state
from flexvol.core.config import Config
from flexvol.core.errors import Busy, FlexvolError
from flexvol.core.quantity import human_bytes
from flexvol.provisioning import capacity, claims, deletion, names, ownership, reclaim
from flexvol.provisioning.cluster import (
    AlreadyExists,
    ApiError,
    Cluster,
    Conflict,
    EventRecorder,
    Gone,
    log,
)

RETRY_SECONDS = 5

DeleteVolume = Callable[[Config, str], bool]
# Examines the node's leftovers at start (repairing them only when asked): one sentence each.
RepairCheck = Callable[[Config], list[str]]


def repair_check(kubelet_root: str, apply: bool) -> RepairCheck:
    """The toolkit's `flexvol repair` as the agent's start-up check: report each finding and
    what `--apply` would do; act only when `apply` (the agent's --repair-apply)."""

    def check(config: Config) -> list[str]:
        from flexvol.toolkit import repair, repair_apply

        lines = []
        for finding in repair.findings(config, kubelet_root):
            text = f"{finding.kind} {finding.subject}: {finding.detail}"
            if apply and finding.action:
                try:
                    text += f"; repaired: {repair_apply.apply(config, finding)}"
                except FlexvolError as error:
                    text += f"; repair failed: {error}"
            elif finding.action:
                text += f"; 'flexvol repair --apply' would {finding.action}"
            lines.append(text)
        return lines

    return check


class Agent:
    def __init__(self, cluster: Cluster, config: Config, node_name: str, recorder: EventRecorder, *,
                 provisioner: str = names.PROVISIONER_NAME, capacity_limit: int | None = None,
                 delete_volume: DeleteVolume = deletion.delete_volume,
                 repair_check: RepairCheck | None = None) -> None:
        self.cluster = cluster
        self.config = config
        self.node_name = node_name
        self.recorder = recorder
        self.provisioner = provisioner
        self.capacity_limit = capacity_limit
        self.delete_volume = delete_volume
        self.repair_check = repair_check
        self.resource_version = ""
        # PVs whose volume this agent reclaimed (name -> UID), published for the provisioner
        # to delete; dropped once the PV is gone.
        self.reclaimed: dict[str, str] = {}
        # the pool's last condition said in an event: None (nothing said yet), ok, low, unbacked
        self.pool_condition: str | None = None

    def report_findings(self) -> list[str]:
        """At start: an event on the node for each leftover the repair check finds."""
        if self.repair_check is None:
            return []
        try:
            found = self.repair_check(self.config)
        except FlexvolError as error:
            found = [f"the repair check failed: {error}"]
        node = self.cluster.get_node(self.node_name) or {"metadata": {"name": self.node_name}}
        for sentence in found:
            self.recorder.record(node, "Node", "Warning", "FlexvolRepairNeeded", sentence)
        return found

    # ---- capacity ----------------------------------------------------------------------------

    def publish_capacity(self) -> dict:
        """Write this node's NodeCapacity object when its figures changed; returns it."""
        # A node where no volume was mounted yet has no data root; its capacity is its pool's.
        state.ensure_dirs(self.config)
        total, volumes, pool = capacity.measure(self.config, self.capacity_limit)
        node = self.cluster.get_node(self.node_name)
        self.warn_pool(pool, node)
        uid = (node or {}).get("metadata", {}).get("uid")
        body = capacity.capacity_object(self.node_name, uid, total, volumes, self.reclaimed,
                                        capacity.ready_snapshots(self.config))
        current = self.cluster.get_capacity(self.node_name)
        if capacity.same_figures(current, body):
            return current  # type: ignore[return-value]
        try:
            if current is None:
                return self._write_capacity(self.cluster.create_capacity, body)
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            return self._write_capacity(self.cluster.replace_capacity, body)
        except (AlreadyExists, Conflict):
            log.info("capacity of %s changed meanwhile; published at the next round", self.node_name)
            return body

    def warn_pool(self, pool: budget.Pool, node: dict | None) -> str:
        """An event on the node when its pool runs low, or can no longer back what thin volumes
        were promised (their pods' writes will fail), and one when it is fine again; once per
        change, not at every round."""
        condition = "unbacked" if pool.unbacked_bytes else "low" if pool.low else "ok"
        previous, self.pool_condition = self.pool_condition, condition
        if condition == previous or (condition == "ok" and previous is None):
            return condition
        node = node or {"metadata": {"name": self.node_name}}
        figures = (f"{pool.describe()}; new or grown volumes may take "
                   f"{human_bytes(pool.available_bytes)}")
        if condition == "unbacked":
            self.recorder.record(node, "Node", "Warning", "FlexvolPoolUnbacked",
                                 f"{figures}. Thin volumes were promised "
                                 f"{human_bytes(pool.unbacked_bytes)} more than is free: once the "
                                 "pool is full their pods' writes fail with I/O errors. Free space "
                                 "on the pool filesystem now; thick volumes are not affected")
        elif condition == "low":
            self.recorder.record(node, "Node", "Warning", "FlexvolPoolLow",
                                 f"{figures}. Under {budget.LOW_FRACTION:.0%} of the pool is free: "
                                 "free space on it or move the data root")
        else:
            self.recorder.record(node, "Node", "Normal", "FlexvolPoolSpaceOK", figures)
        return condition

    def _write_capacity(self, write: Callable[[dict], dict], body: dict) -> dict:
        # RBAC cannot scope a DaemonSet's account to one node's object: the agent does.
        if body["metadata"]["name"] != self.node_name or body.get("node") != self.node_name:
            raise FlexvolError(f"the agent of {self.node_name} writes no other node's capacity "
                               f"({body['metadata']['name']})")
        return write(body)

    # ---- ownership and reclaim -----------------------------------------------------------------

    def record_owner(self, pv: dict) -> bool:
        """Record in the volume's record which PV owns it, for a PV of ours on this node that
        is not Released; True when the record was written."""
        if not ownership.should_record(pv, self.node_name, self.provisioner):
            return False
        try:
            written, problem = ownership.record_owner(self.config, pv)
        except Busy:
            return False  # a driver call holds the volume: recorded at the next look
        except FlexvolError as error:
            written, problem = False, str(error)
        if problem:
            self._event(pv, "Warning", "VolumeOwnerNotRecorded", problem)
        elif written:
            log.info("volume %s recorded as PV %s's (claim %s)", claims.volume_id_of_pv(pv),
                     pv["metadata"]["name"], ownership.owner_fields(pv)[ownership.CLAIM])
        return written

    def reclaim(self, pv: dict, node: dict | None) -> reclaim.ReclaimDecision:
        self.record_owner(pv)
        decision = reclaim.decide_reclaim(pv, self.node_name, self.provisioner, node)
        if decision.action == reclaim.KEEP:
            self._event(pv, "Normal", "VolumeRetained", decision.message)
        elif decision.action == reclaim.WAIT:
            self._event(pv, "Normal", "VolumeInUse", decision.message)
        elif decision.action == reclaim.DELETE:
            self._delete(pv, decision)
        return decision

    def _delete(self, pv: dict, decision: reclaim.ReclaimDecision) -> None:
        meta = pv["metadata"]
        if self.reclaimed.get(meta.get("name", "")) == meta.get("uid"):
            return  # done; the provisioner deletes the PV
        problem = ownership.reclaim_problem(self.config, pv, self.provisioner)
        if problem:
            self._event(pv, "Warning", "VolumeNotReclaimed", f"{problem}; not deleting it")
            return
        try:
            removed = self.delete_volume(self.config, decision.volume_id)
        except FlexvolError as error:
            self._event(pv, "Warning", "VolumeFailedDelete", str(error))
            return
        log.info("reclaimed PV %s: volume %s %s", meta["name"], decision.volume_id,
                 "deleted" if removed else "had never been created on this node")
        self.reclaimed[meta["name"]] = meta["uid"]
        try:
            self.publish_capacity()  # tells the provisioner at once
        except (ApiError, FlexvolError) as error:
            log.warning("publishing the reclaimed PV %s: %s; at the next round", meta["name"], error)
        self.recorder.forget(meta.get("uid", ""))

    def _event(self, pv: dict, event_type: str, reason: str, message: str) -> None:
        self.recorder.record(pv, "PersistentVolume", event_type, reason, message)

    # ---- the loop ----------------------------------------------------------------------------

    def resync(self) -> str:
        pvs, resource_version = self.cluster.list_pvs()
        node = self.cluster.get_node(self.node_name)
        present = {pv["metadata"]["name"]: pv["metadata"].get("uid") for pv in pvs}
        self.reclaimed = {name: uid for name, uid in self.reclaimed.items() if present.get(name) == uid}
        for pv in pvs:
            self.reclaim(pv, node)
        return resource_version

    def step(self, watch_seconds: int) -> bool:
        """One round: publish capacity, examine every PV, then follow PV changes for a while.
        Returns False when the round failed (the API server unreachable, say)."""
        try:
            self.publish_capacity()
            self.resource_version = self.resync()
            for kind, pv in self.cluster.watch_pvs(self.resource_version, watch_seconds):
                if kind == "DELETED":
                    self.recorder.forget(pv["metadata"].get("uid", ""))
                    if self.reclaimed.get(pv["metadata"].get("name")) == pv["metadata"].get("uid"):
                        del self.reclaimed[pv["metadata"]["name"]]
                    continue
                self.reclaim(pv, self.cluster.get_node(self.node_name))
        except Gone:
            self.resource_version = ""
        except ApiError as error:
            log.warning("agent on %s: %s; retrying", self.node_name, error)
            return False
        except FlexvolError as error:
            log.warning("agent on %s: %s", self.node_name, error)
            return False
        return True

    def run(self, stop: threading.Event, watch_seconds: int = 30) -> None:
        try:
            self.report_findings()
        except ApiError as error:
            log.warning("reporting repair findings: %s", error)
        while not stop.is_set():
            if not self.step(watch_seconds):
                # A failed round returns at once: pause, or an unreachable API server turns the
                # loop into a busy one.
                stop.wait(min(watch_seconds, RETRY_SECONDS))
