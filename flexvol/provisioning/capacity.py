"""The node's capacity as its agent publishes it, and where: a small custom object.

Why a custom object (NodeCapacity, cluster-scoped, one per node, named after it) and not a
node annotation: writing annotations needs `patch` on nodes, which lets a node agent relabel
and taint any node in the cluster and so steer every workload's scheduling; the custom object
needs write access to flexvol's own type only. It is owned by its Node, so it is garbage
collected with it, and `kubectl get nodecapacities` shows every node's budget at a glance.

The published capacity is a commitment budget: volumes are sparse, but each may grow to its
size, so the pool is never promised more than it holds.
"""

from __future__ import annotations

import os
import time

from flexvol import state
from flexvol.config import Config
from flexvol.errors import StateCorrupt
from flexvol.provisioning import names


def committed_volumes(config: Config) -> dict[str, int]:
    """Every volume on this node and its size in bytes, from the records."""
    volumes: dict[str, int] = {}
    try:
        entries = sorted(os.listdir(config.records_dir))
    except OSError:
        return volumes
    for entry in entries:
        if not entry.endswith(".json") or entry.startswith("."):
            continue
        volume_id = entry[: -len(".json")]
        try:
            record = state.load_record(config, volume_id)
        except StateCorrupt:
            record = None
        if record is not None:
            volumes[volume_id] = int(record.get("size_bytes") or 0)
    return volumes


def allocated_bytes(config: Config, volume_id: str) -> int:
    try:
        return os.stat(config.backing_file(volume_id)).st_blocks * 512
    except OSError:
        return 0


def pool_capacity(config: Config, volumes: dict[str, int], limit: int | None = None) -> int:
    """What the pool can hold in all: the space still free on its filesystem plus what our
    volumes already occupy there (other files on that filesystem are not ours to promise),
    capped by the operator's `limit`."""
    directory = config.volumes_dir if os.path.isdir(config.volumes_dir) else config.data_root
    stat = os.statvfs(directory)
    ours = sum(allocated_bytes(config, volume_id) for volume_id in volumes)
    capacity = stat.f_bavail * stat.f_frsize + ours
    return min(capacity, limit) if limit is not None else capacity


def capacity_object(node: str, node_uid: str | None, capacity_bytes: int,
                    volumes: dict[str, int]) -> dict:
    body = {
        "apiVersion": f"{names.CAPACITY_GROUP}/{names.CAPACITY_VERSION}",
        "kind": names.CAPACITY_KIND,
        "metadata": {"name": node},
        "node": node,
        "capacityBytes": capacity_bytes,
        "committedBytes": sum(volumes.values()),
        "freeBytes": max(0, capacity_bytes - sum(volumes.values())),
        "volumes": dict(sorted(volumes.items())),
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
    return all(old.get(key) == new[key] for key in ("capacityBytes", "committedBytes", "volumes"))
