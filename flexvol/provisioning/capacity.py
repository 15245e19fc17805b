"""The node's capacity as its agent publishes it, and where: a small custom object.

Why a custom object (NodeCapacity, cluster-scoped, one per node, named after it) and not a
node annotation: writing annotations needs `patch` on nodes, which lets a node agent relabel
and taint any node in the cluster and so steer every workload's scheduling; the custom object
needs write access to flexvol's own type only. It is owned by its Node, so it is garbage
collected with it, and `kubectl get nodecapacities` shows every node's budget at a glance.

The published capacity is the toolkit's commitment budget (`flexvol capacity`): volumes are
sparse, but each may grow to its size, so the pool is never promised more than the budget.
"""

from __future__ import annotations

import time

from flexvol import inventory
from flexvol.config import Config
from flexvol.provisioning import names


def measure(config: Config, limit: int | None = None) -> tuple[int, dict[str, int]]:
    """The node's budget and its volumes' sizes, as the driver counts them when it refuses a
    volume past the budget (budget.py): pool filesystem size times the overcommit ratio, and
    every backing file's size; the budget capped by the operator's `limit`."""
    views = inventory.volumes(config)
    budget = inventory.capacity(config, views).budget_bytes
    volumes = {view.volume_id: view.size_bytes or 0 for view in views if view.file_exists}
    return (min(budget, limit) if limit is not None else budget), volumes


def capacity_object(node: str, node_uid: str | None, capacity_bytes: int,
                    volumes: dict[str, int], reclaimed: dict[str, str] | None = None) -> dict:
    """The NodeCapacity body; `reclaimed` (PV name -> UID) lists the PVs whose volume the agent
    deleted, for the provisioner to delete (the agent may not delete PVs)."""
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
    return all(old.get(key, {} if key == "reclaimed" else None) == new[key]
               for key in ("capacityBytes", "committedBytes", "volumes", "reclaimed"))
