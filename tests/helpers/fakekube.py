"""An in-memory stand-in for the API server behind the `Cluster` interface.

It keeps objects as dicts, stamps resourceVersions and uids, enforces the optimistic
concurrency the real server does (AlreadyExists, resourceVersion and uid preconditions), and
queues watch events that a watch call hands out once. `fail` makes the next call of a method
raise, to test how controllers carry on.
"""

from __future__ import annotations

import copy
import itertools
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

from flexvol.provisioning.cluster import AlreadyExists, ApiError, Conflict, Gone, NotFound

DATA = Path(__file__).resolve().parents[1] / "unit" / "data" / "provisioning"


def fixture(name: str) -> dict:
    """A recorded API object from tests/unit/data/provisioning."""
    return json.loads((DATA / f"{name}.json").read_text())


class FakeCluster:
    def __init__(self) -> None:
        self._versions = itertools.count(1000)
        self.claims: dict[tuple[str, str], dict] = {}
        self.classes: dict[str, dict] = {}
        self.nodes: dict[str, dict] = {}
        self.pvs: dict[str, dict] = {}
        self.pods: dict[tuple[str, str], dict] = {}
        self.capacities: dict[str, dict] = {}
        self.leases: dict[tuple[str, str], dict] = {}
        self.events: list[dict] = []
        self.claim_watch: list[tuple[str, dict]] = []
        self.pv_watch: list[tuple[str, dict]] = []
        self.writes: list[str] = []
        self.failures: dict[str, ApiError] = {}
        # snapshot.storage.k8s.io objects; None: the cluster has no such CRDs
        self.volume_snapshots: dict[tuple[str, str], dict] | None = {}
        self.snapshot_contents: dict[str, dict] = {}

    # ---- test-side helpers -------------------------------------------------------------------

    def fail(self, method: str, error: ApiError) -> None:
        self.failures[method] = error

    def _check(self, method: str) -> None:
        error = self.failures.pop(method, None)
        if error is not None:
            raise error

    def _stamp(self, body: dict) -> dict:
        body = copy.deepcopy(body)
        meta = body.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta["resourceVersion"] = str(next(self._versions))
        return body

    def put_claim(self, claim: dict, event: str = "ADDED") -> dict:
        stored = self._stamp(claim)
        meta = stored["metadata"]
        self.claims[(meta["namespace"], meta["name"])] = stored
        self.claim_watch.append((event, copy.deepcopy(stored)))
        return stored

    def put_class(self, storage_class: dict) -> None:
        self.classes[storage_class["metadata"]["name"]] = copy.deepcopy(storage_class)

    def put_node(self, node: dict) -> None:
        self.nodes[node["metadata"]["name"]] = self._stamp(node)

    def put_pv(self, pv: dict, event: str = "MODIFIED") -> dict:
        stored = self._stamp(pv)
        self.pvs[stored["metadata"]["name"]] = stored
        self.pv_watch.append((event, copy.deepcopy(stored)))
        return stored

    def events_for(self, name: str) -> list[tuple[str, str, str]]:
        return [(event["type"], event["reason"], event["message"]) for event in self.events
                if event["involvedObject"]["name"] == name]

    # ---- the Cluster interface ---------------------------------------------------------------

    def list_claims(self) -> tuple[list[dict], str]:
        self._check("list_claims")
        return [copy.deepcopy(claim) for claim in self.claims.values()], str(next(self._versions))

    def _drain(self, queue: list[tuple[str, dict]], method: str) -> Iterator[tuple[str, dict]]:
        self._check(method)
        while queue:
            yield queue.pop(0)

    def watch_claims(self, resource_version: str, timeout_seconds: int) -> Iterator[tuple[str, dict]]:
        return self._drain(self.claim_watch, "watch_claims")

    def get_storage_class(self, name: str) -> dict | None:
        return copy.deepcopy(self.classes.get(name))

    def get_node(self, name: str) -> dict | None:
        return copy.deepcopy(self.nodes.get(name))

    def list_nodes(self) -> list[dict]:
        return [copy.deepcopy(node) for node in self.nodes.values()]

    def list_pvs(self) -> tuple[list[dict], str]:
        self._check("list_pvs")
        return [copy.deepcopy(pv) for pv in self.pvs.values()], str(next(self._versions))

    def watch_pvs(self, resource_version: str, timeout_seconds: int) -> Iterator[tuple[str, dict]]:
        return self._drain(self.pv_watch, "watch_pvs")

    def create_pv(self, body: dict) -> dict:
        self._check("create_pv")
        name = body["metadata"]["name"]
        if name in self.pvs:
            raise AlreadyExists(f"persistentvolumes {name!r} already exists")
        stored = self._stamp(body)
        stored["status"] = {"phase": "Available"}
        self.pvs[name] = stored
        self.writes.append(f"create pv {name}")
        return copy.deepcopy(stored)

    def delete_pv(self, name: str, uid: str) -> None:
        self._check("delete_pv")
        if name not in self.pvs:
            raise NotFound(f"persistentvolumes {name!r} not found")
        if uid and self.pvs[name]["metadata"]["uid"] != uid:
            raise Conflict(f"precondition failed: uid {uid} of {name}")
        del self.pvs[name]
        self.writes.append(f"delete pv {name}")

    def get_pv(self, name: str) -> dict | None:
        self._check("get_pv")
        return copy.deepcopy(self.pvs.get(name))

    def replace_pv(self, body: dict) -> dict:
        self._check("replace_pv")
        name = body["metadata"]["name"]
        current = self.pvs.get(name)
        if current is None:
            raise NotFound(f"persistentvolumes {name!r} not found")
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise Conflict(f"the object has been modified: persistentvolumes {name!r}")
        body = copy.deepcopy(body)
        body["metadata"]["uid"] = current["metadata"]["uid"]
        body["status"] = copy.deepcopy(current.get("status") or {})
        self.pvs[name] = self._stamp(body)
        self.writes.append(f"replace pv {name}")
        return copy.deepcopy(self.pvs[name])

    def get_claim(self, namespace: str, name: str) -> dict | None:
        self._check("get_claim")
        return copy.deepcopy(self.claims.get((namespace, name)))

    def get_volume_snapshot(self, namespace: str, name: str) -> dict | None:
        from flexvol.provisioning.sources import MissingApi

        if self.volume_snapshots is None:
            raise MissingApi("volumesnapshots")
        return copy.deepcopy(self.volume_snapshots.get((namespace, name)))

    def get_volume_snapshot_content(self, name: str) -> dict | None:
        from flexvol.provisioning.sources import MissingApi

        if self.volume_snapshots is None:
            raise MissingApi("volumesnapshotcontents")
        return copy.deepcopy(self.snapshot_contents.get(name))

    def list_pods(self, namespace: str) -> list[dict]:
        self._check("list_pods")
        return [copy.deepcopy(pod) for (space, _name), pod in self.pods.items() if space == namespace]

    def list_capacities(self) -> list[dict]:
        return [copy.deepcopy(item) for item in self.capacities.values()]

    def get_capacity(self, name: str) -> dict | None:
        return copy.deepcopy(self.capacities.get(name))

    def create_capacity(self, body: dict) -> dict:
        name = body["metadata"]["name"]
        if name in self.capacities:
            raise AlreadyExists(name)
        self.capacities[name] = self._stamp(body)
        self.writes.append(f"create capacity {name}")
        return copy.deepcopy(self.capacities[name])

    def replace_capacity(self, body: dict) -> dict:
        name = body["metadata"]["name"]
        current = self.capacities.get(name)
        if current is None:
            raise NotFound(name)
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise Conflict(name)
        body = copy.deepcopy(body)
        body["metadata"]["uid"] = current["metadata"]["uid"]
        self.capacities[name] = self._stamp(body)
        self.writes.append(f"replace capacity {name}")
        return copy.deepcopy(self.capacities[name])

    def create_event(self, namespace: str, body: dict) -> None:
        self._check("create_event")
        assert body["metadata"]["namespace"] == namespace
        self.events.append(copy.deepcopy(body))

    def get_lease(self, namespace: str, name: str) -> dict | None:
        self._check("get_lease")
        return copy.deepcopy(self.leases.get((namespace, name)))

    def create_lease(self, namespace: str, body: dict) -> dict:
        key = (namespace, body["metadata"]["name"])
        if key in self.leases:
            raise AlreadyExists(str(key))
        self.leases[key] = self._stamp(body)
        return copy.deepcopy(self.leases[key])

    def replace_lease(self, namespace: str, body: dict) -> dict:
        self._check("replace_lease")
        key = (namespace, body["metadata"]["name"])
        current = self.leases.get(key)
        if current is None:
            raise NotFound(str(key))
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise Conflict(f"the lease {key} changed")
        body = copy.deepcopy(body)
        body["metadata"]["uid"] = current["metadata"]["uid"]
        self.leases[key] = self._stamp(body)
        return copy.deepcopy(self.leases[key])


__all__ = ["FakeCluster", "Gone", "fixture"]
