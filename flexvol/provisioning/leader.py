"""Leader election over a coordination.k8s.io Lease, so two provisioner replicas never both
provision.

As client-go's leaderelection does, expiry is judged by this process's own clock from the
moment it last saw the lease change, never by comparing the holder's renewTime with our clock:
the two machines' clocks may disagree.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from flexvol.provisioning.cluster import AlreadyExists, ApiError, Cluster, Conflict, log


def micro_time(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(self, cluster: Cluster, namespace: str, name: str, identity: str, *,
                 lease_seconds: int = 15, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.wall_clock = wall_clock
        self.observed: tuple[str, str] | None = None  # (holder, renewTime) last seen
        self.observed_at = 0.0
        self.renewed_at: float | None = None

    def is_leader(self) -> bool:
        """True while our last successful renewal is recent enough that no one else can have
        taken the lease (a safety margin of a third of its duration)."""
        if self.renewed_at is None:
            return False
        return self.clock() - self.renewed_at < self.lease_seconds * 2 / 3

    def confirm(self) -> bool:
        """Right before a write: still leading by our own clock, and the lease as the API
        server has it now still names us. A replica that lost the lease meanwhile (taken over
        by another while a watch or a resync ran) must not write; on any doubt, no write."""
        if not self.is_leader():
            return False
        try:
            lease = self.cluster.get_lease(self.namespace, self.name)
        except ApiError as error:
            log.warning("lease %s/%s: %s; not writing", self.namespace, self.name, error)
            return False
        holder = ((lease or {}).get("spec") or {}).get("holderIdentity")
        if holder != self.identity:
            log.warning("lease %s/%s is held by %s now; %s stops writing", self.namespace, self.name,
                        holder, self.identity)
            self.renewed_at = None
            return False
        return True

    def try_acquire_or_renew(self) -> bool:
        now = self.clock()
        try:
            lease = self.cluster.get_lease(self.namespace, self.name)
            if lease is None:
                self.cluster.create_lease(self.namespace, self._lease(None, transitions=0))
                return self._won(now, "acquired a new lease")
            spec = lease.get("spec") or {}
            holder = spec.get("holderIdentity") or ""
            seen = (holder, spec.get("renewTime") or "")
            if seen != self.observed:
                self.observed = seen
                self.observed_at = now
            duration = int(spec.get("leaseDurationSeconds") or self.lease_seconds)
            if holder and holder != self.identity and now < self.observed_at + duration:
                self.renewed_at = None
                return False
            transitions = int(spec.get("leaseTransitions") or 0)
            if holder != self.identity:
                transitions += 1
            body = self._lease(lease, transitions=transitions,
                               acquired=spec.get("acquireTime") if holder == self.identity else None)
            self.cluster.replace_lease(self.namespace, body)
            return self._won(now, "took over the lease" if holder != self.identity else "")
        except (AlreadyExists, Conflict):
            self.renewed_at = None
            return False
        except ApiError as error:
            log.warning("lease %s/%s: %s", self.namespace, self.name, error)
            return self.is_leader()

    def _won(self, now: float, note: str) -> bool:
        if note or self.renewed_at is None:
            log.info("leading as %s (%s)", self.identity, note or "renewed")
        self.renewed_at = now
        return True

    def _lease(self, current: dict | None, *, transitions: int, acquired: str | None = None) -> dict:
        stamp = micro_time(self.wall_clock())
        metadata = {"name": self.name, "namespace": self.namespace}
        if current is not None:
            metadata["resourceVersion"] = current["metadata"]["resourceVersion"]
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self.lease_seconds,
                "acquireTime": acquired or stamp,
                "renewTime": stamp,
                "leaseTransitions": transitions,
            },
        }
