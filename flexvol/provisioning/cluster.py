"""The few API calls the controllers make, as one small interface over plain dicts.

kube.py implements it with the official client; tests use an in-memory fake. Objects go in and
come out as the JSON the API server serves (camelCase keys), never as client model classes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Protocol

log = logging.getLogger("flexvol.provisioning")


class ApiError(Exception):
    """An API call failed for a reason the controller cannot fix by itself; retried later."""


class NotFound(ApiError):
    pass


class AlreadyExists(ApiError):
    pass


class Conflict(ApiError):
    """The object changed since it was read (resourceVersion or uid precondition)."""


class Gone(ApiError):
    """The watch's resourceVersion is too old: list again."""


class Cluster(Protocol):
    def list_claims(self) -> tuple[list[dict], str]: ...
    def watch_claims(self, resource_version: str, timeout_seconds: int) -> Iterator[tuple[str, dict]]: ...
    def get_storage_class(self, name: str) -> dict | None: ...
    def get_node(self, name: str) -> dict | None: ...
    def list_nodes(self) -> list[dict]: ...
    def list_pvs(self) -> tuple[list[dict], str]: ...
    def watch_pvs(self, resource_version: str, timeout_seconds: int) -> Iterator[tuple[str, dict]]: ...
    def create_pv(self, body: dict) -> dict: ...
    def delete_pv(self, name: str, uid: str) -> None: ...
    def get_pv(self, name: str) -> dict | None: ...
    def replace_pv(self, body: dict) -> dict: ...
    def get_claim(self, namespace: str, name: str) -> dict | None: ...
    # snapshot.storage.k8s.io; sources.MissingApi when the cluster does not serve it
    def get_volume_snapshot(self, namespace: str, name: str) -> dict | None: ...
    def get_volume_snapshot_content(self, name: str) -> dict | None: ...
    def list_pods(self, namespace: str) -> list[dict]: ...
    def list_capacities(self) -> list[dict]: ...
    def get_capacity(self, name: str) -> dict | None: ...
    def create_capacity(self, body: dict) -> dict: ...
    def replace_capacity(self, body: dict) -> dict: ...
    def create_event(self, namespace: str, body: dict) -> None: ...
    def get_lease(self, namespace: str, name: str) -> dict | None: ...
    def create_lease(self, namespace: str, body: dict) -> dict: ...
    def replace_lease(self, namespace: str, body: dict) -> dict: ...


def timestamp(now: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if now is None else now))


class EventRecorder:
    """Events on API objects, each said once: a controller that re-examines a claim every
    minute must not repeat the same sentence every minute (a restart says it once more)."""

    def __init__(self, cluster: Cluster, component: str, host: str = "") -> None:
        self.cluster = cluster
        self.component = component
        self.host = host
        self.last: dict[str, tuple[str, str]] = {}

    def record(self, obj: dict, kind: str, event_type: str, reason: str, message: str) -> bool:
        meta = obj.get("metadata", {})
        key = meta.get("uid") or f"{kind}/{meta.get('namespace', '')}/{meta.get('name', '')}"
        level = logging.WARNING if event_type == "Warning" else logging.INFO
        if self.last.get(key) == (reason, message):
            return False
        self.last[key] = (reason, message)
        log.log(level, "%s %s/%s: %s: %s", kind, meta.get("namespace", ""), meta.get("name", ""),
                reason, message)
        # Cluster-scoped objects (PVs, nodes) keep their events in "default", as kubectl expects.
        namespace = meta.get("namespace") or "default"
        involved = {"apiVersion": "v1", "kind": kind, "name": meta.get("name", "")}
        if meta.get("namespace"):
            involved["namespace"] = meta["namespace"]
        if meta.get("uid"):
            involved["uid"] = meta["uid"]
        now = timestamp()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name', 'object')}.", "namespace": namespace},
            "involvedObject": involved,
            "reason": reason,
            "message": message[:1024],
            "type": event_type,
            "source": {"component": self.component, **({"host": self.host} if self.host else {})},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.cluster.create_event(namespace, body)
        except ApiError as error:
            log.warning("could not record event %s on %s: %s", reason, meta.get("name"), error)
        return True

    def forget(self, uid: str) -> None:
        self.last.pop(uid, None)
