"""The node's capacity as its agent publishes it, and where: a small custom object.

Why a custom object (NodeCapacity, cluster-scoped, one per node, named after it) and not a
node annotation: writing annotations needs `patch` on nodes, which lets a node agent relabel
and taint any node in the cluster and so steer every workload's scheduling; the custom object
needs write access to flexvol's own type only. It is owned by its Node, so it is garbage
collected with it, and `kubectl get nodecapacities` shows every node's budget at a glance.

The published capacity is what the driver enforces (budget.py, `flexvol capacity`): the sum
of the volumes' sizes plus what a new or grown volume may still take, the pool's real free
space minus what thin volumes were promised and have not written yet. So the provisioner's
free figure (capacity minus committed) is exactly the driver's.
"""

from __future__ import annotations

import time

from flexvol.core import budget
from flexvol.core.config import Config
from flexvol.provisioning import names

# Free space moves with every log line on a shared pool: republish at once when the figure
# shrinks by this much, and when it grows by this much or 1%, not at every round.
SHRINK_STEP = 16 << 20
GROW_STEP = 64 << 20


def measure(config: Config, limit: int | None = None) -> tuple[int, dict[str, int], budget.Pool]:
    """The node's capacity (capped by the operator's `limit`), its volumes' sizes, and the pool
    as read, all as the driver counts them when it refuses a volume (budget.py)."""
    pool = budget.measure(config)
    total = pool.committed_bytes + pool.available_bytes
    volumes = {volume_id: size for volume_id, (size, _) in pool.sizes.items()}
    return (min(total, limit) if limit is not None else total), volumes, pool


def ready_snapshots(config: Config) -> dict[str, dict]:
    """The node's snapshots whose record says ready (checked here, on the node), for the
    provisioner to restore claims from: name -> {volume, sizeBytes, fsType[, block]}."""
    from flexvol.core import snapshots

    found = {}
    for record in snapshots.list_snapshots(config, on_corrupt=lambda *_: None):
        entry = {"volume": record.source_volume, "sizeBytes": int(record.size_bytes),
                 "fsType": record.fs_type or ""}
        if record.block:
            entry["block"] = True
        found[record.name] = entry
    return dict(sorted(found.items()))


def capacity_object(node: str, node_uid: str | None, capacity_bytes: int,
                    volumes: dict[str, int], reclaimed: dict[str, str] | None = None,
                    snapshots: dict[str, dict] | None = None) -> dict:
    """The NodeCapacity body; `reclaimed` (PV name -> UID) lists the PVs whose volume the agent
    deleted, for the provisioner to delete (the agent may not delete PVs); `snapshots` the
    node's ready snapshots (ready_snapshots)."""
    body = {
        "apiVersion": f"{names.CAPACITY_GROUP}/{names.CAPACITY_VERSION}",
        "kind": names.CAPACITY_KIND,
        "metadata": {"name": node},
        "node": node,
        "capacityBytes": capacity_bytes,
        "committedBytes": sum(volumes.values()),
        "freeBytes": max(0, capacity_bytes - sum(volumes.values())),
        "volumes": dict(sorted(volumes.items())),
        "reclaimed": dict(sorted((reclaimed or {}).items())),
        "snapshots": dict(sorted((snapshots or {}).items())),
        "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if node_uid:
        body["metadata"]["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid},
        ]
    return body


def same_figures(old: dict | None, new: dict) -> bool:
    """Unchanged apart from the time stamp: no write needed."""
    if old is None:
        return False
    if any(old.get(key, {} if key in ("reclaimed", "snapshots") else None) != new[key]
           for key in ("committedBytes", "volumes", "reclaimed", "snapshots")):
        return False
    before, now = int(old.get("capacityBytes") or 0), new["capacityBytes"]
    return before - SHRINK_STEP < now < before + max(GROW_STEP, before // 100)
