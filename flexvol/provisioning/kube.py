"""The `Cluster` interface over the official Kubernetes client.

Objects are read as the raw JSON the API server sends (`_preload_content=False`, watch events'
`raw_object`) and written as dicts, so the controllers see exactly what `kubectl get -o
json` shows and never the client's model classes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import TypeVar

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from flexvol.provisioning import names
from flexvol.provisioning.cluster import AlreadyExists, ApiError, Conflict, Gone, NotFound

T = TypeVar("T")
CAPACITY = (names.CAPACITY_GROUP, names.CAPACITY_VERSION, names.CAPACITY_PLURAL)
SNAPSHOT_API = ("snapshot.storage.k8s.io", "v1")


def api_client(kubeconfig: str | None) -> client.ApiClient:
    """From a kubeconfig file, or the pod's service account when there is none."""
    if kubeconfig:
        return config.new_client_from_config(config_file=kubeconfig)
    configuration = client.Configuration()
    config.load_incluster_config(client_configuration=configuration)
    return client.ApiClient(configuration)


def translate(error: Exception) -> ApiError:
    if isinstance(error, ApiException):
        detail = error.reason or ""
        try:
            body = json.loads(error.body or "{}")
            detail = body.get("message") or detail
            reason = body.get("reason", "")
        except (TypeError, ValueError):
            reason = ""
        text = f"{error.status} {detail}".strip()
        if error.status == 404:
            return NotFound(text)
        if error.status == 409:
            return AlreadyExists(text) if reason == "AlreadyExists" else Conflict(text)
        if error.status == 410:
            return Gone(text)
        return ApiError(text)
    return ApiError(f"cannot reach the API server: {error}")


def call(function: Callable[..., T], *args: object, **kwargs: object) -> T:
    try:
        return function(*args, **kwargs)
    except (ApiException, HTTPError, OSError) as error:
        raise translate(error) from None


def raw(function: Callable[..., object], *args: object, **kwargs: object) -> dict:
    response = call(function, *args, _preload_content=False, **kwargs)
    return json.loads(response.data)  # type: ignore[attr-defined]


def optional(function: Callable[..., object], *args: object, **kwargs: object) -> dict | None:
    try:
        return raw(function, *args, **kwargs)
    except NotFound:
        return None


class KubeCluster:
    def __init__(self, api: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api)
        self.storage = client.StorageV1Api(api)
        self.coordination = client.CoordinationV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    def _watch(self, function: Callable[..., object], resource_version: str,
               timeout_seconds: int) -> Iterator[tuple[str, dict]]:
        # Not deserialize=False: the client then fails on ERROR events (410 Gone) with a
        # KeyError on "raw_object"; the raw object is there either way.
        stream = watch.Watch().stream(function, resource_version=resource_version,
                                      timeout_seconds=timeout_seconds)
        try:
            for event in stream:
                if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                    yield event["type"], event["raw_object"]
        except (ApiException, HTTPError, OSError) as error:
            raise translate(error) from None

    def list_claims(self) -> tuple[list[dict], str]:
        body = raw(self.core.list_persistent_volume_claim_for_all_namespaces)
        return body.get("items") or [], body["metadata"].get("resourceVersion", "")

    def watch_claims(self, resource_version: str, timeout_seconds: int) -> Iterator[tuple[str, dict]]:
        return self._watch(self.core.list_persistent_volume_claim_for_all_namespaces,
                           resource_version, timeout_seconds)

    def get_storage_class(self, name: str) -> dict | None:
        return optional(self.storage.read_storage_class, name)

    def get_node(self, name: str) -> dict | None:
        return optional(self.core.read_node, name)

    def list_nodes(self) -> list[dict]:
        return raw(self.core.list_node).get("items") or []

    def list_pvs(self) -> tuple[list[dict], str]:
        body = raw(self.core.list_persistent_volume)
        return body.get("items") or [], body["metadata"].get("resourceVersion", "")

    def watch_pvs(self, resource_version: str, timeout_seconds: int) -> Iterator[tuple[str, dict]]:
        return self._watch(self.core.list_persistent_volume, resource_version, timeout_seconds)

    def create_pv(self, body: dict) -> dict:
        return raw(self.core.create_persistent_volume, body)

    def delete_pv(self, name: str, uid: str) -> None:
        options = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid or None))
        call(self.core.delete_persistent_volume, name, body=options)

    def get_pv(self, name: str) -> dict | None:
        return optional(self.core.read_persistent_volume, name)

    def replace_pv(self, body: dict) -> dict:
        # The body's resourceVersion makes this a compare-and-swap (409 Conflict when stale).
        return raw(self.core.replace_persistent_volume, body["metadata"]["name"], body)

    def get_claim(self, namespace: str, name: str) -> dict | None:
        return optional(self.core.read_namespaced_persistent_volume_claim, name, namespace)

    def get_volume_snapshot(self, namespace: str, name: str) -> dict | None:
        return snapshot_object(self.custom.get_namespaced_custom_object, *SNAPSHOT_API, namespace,
                               "volumesnapshots", name)

    def get_volume_snapshot_content(self, name: str) -> dict | None:
        return snapshot_object(self.custom.get_cluster_custom_object, *SNAPSHOT_API,
                               "volumesnapshotcontents", name)

    def list_pods(self, namespace: str) -> list[dict]:
        return raw(self.core.list_namespaced_pod, namespace).get("items") or []

    def list_capacities(self) -> list[dict]:
        try:
            return call(self.custom.list_cluster_custom_object, *CAPACITY).get("items") or []
        except NotFound:
            return []  # the CRD is not installed: no node has published anything

    def get_capacity(self, name: str) -> dict | None:
        try:
            return call(self.custom.get_cluster_custom_object, *CAPACITY, name)
        except NotFound:
            return None

    def create_capacity(self, body: dict) -> dict:
        try:
            return call(self.custom.create_cluster_custom_object, *CAPACITY, body)
        except NotFound:
            raise ApiError(f"the {names.CAPACITY_PLURAL}.{names.CAPACITY_GROUP} resource does not "
                           "exist; apply deploy/crd-nodecapacity.yaml") from None

    def replace_capacity(self, body: dict) -> dict:
        return call(self.custom.replace_cluster_custom_object, *CAPACITY, body["metadata"]["name"], body)

    def create_event(self, namespace: str, body: dict) -> None:
        call(self.core.create_namespaced_event, namespace, body, _preload_content=False)

    def get_lease(self, namespace: str, name: str) -> dict | None:
        return optional(self.coordination.read_namespaced_lease, name, namespace)

    def create_lease(self, namespace: str, body: dict) -> dict:
        return raw(self.coordination.create_namespaced_lease, namespace, body)

    def replace_lease(self, namespace: str, body: dict) -> dict:
        return raw(self.coordination.replace_namespaced_lease, body["metadata"]["name"], namespace, body)


def snapshot_object(function: Callable[..., object], *args: object) -> dict | None:
    """A snapshot API object, None when it does not exist; sources.MissingApi when the API
    server has no such resource at all (a 404 that names no object: the CRD is missing)."""
    from flexvol.provisioning.sources import MissingApi

    try:
        return function(*args)  # type: ignore[return-value]
    except ApiException as error:
        if error.status != 404:
            raise translate(error) from None
        try:
            details = json.loads(error.body or "{}").get("details") or {}
        except (TypeError, ValueError):
            details = {}
        if details.get("name"):
            return None
        raise MissingApi(str(args[-2])) from None
    except (HTTPError, OSError) as error:
        raise translate(error) from None
