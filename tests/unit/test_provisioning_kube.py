"""kube.py, the Cluster interface over the official client, against a local HTTP server that
answers a few API paths the way the API server does (lists, watch streams, Status errors)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest
from kubernetes import client

from flexvol.core.config import Config
from flexvol.provisioning import claims
from flexvol.provisioning.agent import Agent
from flexvol.provisioning.cluster import AlreadyExists, ApiError, Conflict, EventRecorder, Gone
from flexvol.provisioning.kube import KubeCluster, api_client
from flexvol.provisioning.leader import LeaderElector
from flexvol.provisioning.provisioner import Provisioner
from tests.helpers.fakekube import fixture


def status(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
            "reason": reason, "message": message}


class Api(BaseHTTPRequestHandler):
    """Routes: (method, path) -> (code, body or list of watch events)."""

    routes: ClassVar[dict[tuple[str, str], tuple[int, object]]] = {}
    seen: ClassVar[list[tuple[str, str, dict, object]]] = []

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.seen.append((self.command, url.path, query, body))
        key = (self.command + (" watch" if query.get("watch") else ""), url.path)
        code, answer = self.routes.get(key, (404, status(404, "NotFound", f"{url.path} not found")))
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        if isinstance(answer, list):  # a watch: one JSON event per line, then the end
            data = b"".join(json.dumps(event).encode() + b"\n" for event in answer)
        else:
            data = json.dumps(answer).encode()
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _answer


@pytest.fixture
def cluster() -> Iterator[KubeCluster]:
    Api.routes, Api.seen = {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    configuration = client.Configuration(host=f"http://127.0.0.1:{server.server_address[1]}")
    try:
        yield KubeCluster(client.ApiClient(configuration))
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_lists_and_watches_hand_out_the_servers_json(cluster: KubeCluster) -> None:
    claim = fixture("claim-wffc-selected")
    path = "/api/v1/persistentvolumeclaims"
    Api.routes[("GET", path)] = (200, {"kind": "PersistentVolumeClaimList",
                                        "metadata": {"resourceVersion": "48250"}, "items": [claim]})
    Api.routes[("GET watch", path)] = (200, [
        {"type": "MODIFIED", "object": claim},
        {"type": "BOOKMARK", "object": {"kind": "PersistentVolumeClaim",
                                        "metadata": {"resourceVersion": "48260"}}},
    ])
    items, version = cluster.list_claims()
    assert (items, version) == ([claim], "48250")
    assert list(cluster.watch_claims(version, 5)) == [("MODIFIED", claim)]
    _, _, query, _ = Api.seen[-1]
    assert query["resourceVersion"] == ["48250"] and query["timeoutSeconds"] == ["5"]


def test_an_expired_watch_is_gone(cluster: KubeCluster) -> None:
    Api.routes[("GET watch", "/api/v1/persistentvolumes")] = (200, [
        {"type": "ERROR", "object": status(410, "Expired", "too old resource version: 1 (48000)")}])
    with pytest.raises(Gone):
        list(cluster.watch_pvs("1", 5))


def test_status_errors_become_the_interfaces_errors(cluster: KubeCluster) -> None:
    assert cluster.get_storage_class("missing") is None
    assert cluster.list_capacities() == []  # CRD not installed: nothing published
    with pytest.raises(ApiError, match=r"apply deploy/crd-nodecapacity\.yaml"):
        cluster.create_capacity({"metadata": {"name": "worker-1"}})
    pv = {"metadata": {"name": "pvc-1"}}
    Api.routes[("POST", "/api/v1/persistentvolumes")] = (
        409, status(409, "AlreadyExists", 'persistentvolumes "pvc-1" already exists'))
    with pytest.raises(AlreadyExists, match="already exists"):
        cluster.create_pv(pv)
    lease = {"metadata": {"name": "l", "namespace": "flexvol", "resourceVersion": "3"}, "spec": {}}
    Api.routes[("PUT", "/apis/coordination.k8s.io/v1/namespaces/flexvol/leases/l")] = (
        409, status(409, "Conflict", "the object has been modified"))
    with pytest.raises(Conflict):
        cluster.replace_lease("flexvol", lease)
    Api.routes[("GET", "/api/v1/nodes")] = (500, status(500, "InternalError", "etcd is down"))
    with pytest.raises(ApiError, match="500 etcd is down"):
        cluster.list_nodes()


def test_writes_send_the_body_and_preconditions(cluster: KubeCluster) -> None:
    pv = fixture("pv-released-delete")
    name = pv["metadata"]["name"]
    Api.routes[("POST", "/api/v1/persistentvolumes")] = (201, pv)
    Api.routes[("DELETE", f"/api/v1/persistentvolumes/{name}")] = (200, pv)
    Api.routes[("POST", "/api/v1/namespaces/shop/events")] = (201, {})
    assert cluster.create_pv(pv) == pv
    assert Api.seen[-1][3] == pv
    cluster.delete_pv(name, pv["metadata"]["uid"])
    assert Api.seen[-1][3]["preconditions"] == {"uid": pv["metadata"]["uid"]}
    recorder = EventRecorder(cluster, "flexvol-provisioner", "host-1")  # type: ignore[arg-type]
    claim = fixture("claim-wffc-selected")
    assert recorder.record(claim, "PersistentVolumeClaim", "Warning", "ProvisioningFailed", "no room")
    method, path, _, event = Api.seen[-1]
    assert (method, path) == ("POST", "/api/v1/namespaces/shop/events")
    assert event["involvedObject"] == {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "data",
                                       "namespace": "shop", "uid": claim["metadata"]["uid"]}
    assert (event["type"], event["reason"], event["message"]) == ("Warning", "ProvisioningFailed", "no room")
    assert event["source"] == {"component": "flexvol-provisioner", "host": "host-1"}


def test_provisioner_round_through_a_kubeconfig_and_the_real_client(
        cluster: KubeCluster, tmp_path: Path) -> None:
    """The client validates bodies against its models: the Lease's times and the PV as built
    must pass, and arrive as built."""
    host = cluster.core.api_client.configuration.host
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": host}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
        "users": [{"name": "test", "user": {"token": "secret"}}],
    }))
    claim = fixture("claim-wffc-selected")
    storage_class = fixture("sc-wffc-delete")
    lease_path = "/apis/coordination.k8s.io/v1/namespaces/flexvol/leases"
    Api.routes.update({
        ("POST", lease_path): (201, {"metadata": {"name": "flexvol-loop-provisioner"}}),
        # the lease as created: the look before the write finds it held by this replica
        ("GET", f"{lease_path}/flexvol-loop-provisioner"): (404, status(404, "NotFound", "no lease")),
        ("GET", "/api/v1/persistentvolumeclaims"): (200, {"metadata": {"resourceVersion": "5"},
                                                           "items": [claim]}),
        ("GET watch", "/api/v1/persistentvolumeclaims"): (200, []),
        ("GET", "/api/v1/persistentvolumes"): (200, {"metadata": {"resourceVersion": "5"}, "items": []}),
        ("GET", "/apis/storage.k8s.io/v1/storageclasses/flexvol-local"): (200, storage_class),
        ("GET", "/api/v1/nodes/worker-1"): (200, fixture("node-worker-1")),
        ("GET", "/apis/flexvol.io/v1alpha1/nodecapacities/worker-1"): (200, fixture("capacity-worker-1")),
        ("POST", "/api/v1/persistentvolumes"): (201, {}),
        ("POST", "/api/v1/namespaces/shop/events"): (201, {}),
    })
    real = KubeCluster(api_client(str(kubeconfig)))
    controller = Provisioner(real, EventRecorder(real, "flexvol-provisioner"))
    elector = LeaderElector(real, "flexvol", "flexvol-loop-provisioner", "a")
    real_create_lease = real.create_lease

    def create_lease(namespace: str, body: dict) -> dict:
        Api.routes[("GET", f"{lease_path}/flexvol-loop-provisioner")] = (200, body)
        return real_create_lease(namespace, body)

    real.create_lease = create_lease  # type: ignore[method-assign]
    assert controller.step(elector, 1)
    posted = {path: body for method, path, _, body in Api.seen if method == "POST"}
    lease = posted[lease_path]["spec"]
    assert lease["holderIdentity"] == "a"
    # the client re-serialises our "...Z" as "+00:00"; both are RFC 3339 MicroTime
    assert datetime.fromisoformat(lease["renewTime"].replace("Z", "+00:00")).tzinfo is not None
    decision = claims.decide_claim(claim, storage_class, "flexvol/loop")
    assert decision.request is not None
    assert posted["/api/v1/persistentvolumes"] == claims.build_pv(
        decision.request, claim, "worker-1", "worker-1.lab.example", "flexvol/loop")
    assert posted["/api/v1/namespaces/shop/events"]["reason"] == "ProvisioningSucceeded"


def test_agent_round_through_the_real_client(cluster: KubeCluster, tmp_path: Path) -> None:
    pv = fixture("pv-released-delete")
    name = pv["metadata"]["name"]
    capacities = "/apis/flexvol.io/v1alpha1/nodecapacities"
    Api.routes.update({
        ("GET", "/api/v1/nodes/worker-1"): (200, fixture("node-worker-2") | {
            "metadata": {"name": "worker-1", "uid": "node-uid"}}),
        ("POST", capacities): (201, {}),
        ("GET", "/api/v1/persistentvolumes"): (200, {"metadata": {"resourceVersion": "7"}, "items": [pv]}),
        ("GET watch", "/api/v1/persistentvolumes"): (200, []),
    })
    config = Config(str(tmp_path / "root"))
    recorder = EventRecorder(cluster, "flexvol-agent")  # type: ignore[arg-type]
    Agent(cluster, config, "worker-1", recorder, capacity_limit=1 << 30).step(1)
    calls = [(method, path) for method, path, _, _ in Api.seen]
    assert ("POST", capacities) in calls
    published = next(body for method, path, _, body in Api.seen if (method, path) == ("POST", capacities))
    assert published["capacityBytes"] == 1 << 30
    assert published["metadata"]["ownerReferences"][0]["uid"] == "node-uid"
    # Released, nothing of it on the node: reclaimed, and said so for the provisioner, which
    # deletes the PV (the agent never does).
    assert not any(method == "DELETE" for method, _ in calls)
    assert [body.get("reclaimed") for method, path, _, body in Api.seen
            if (method, path) == ("POST", capacities)] == [{}, {name: pv["metadata"]["uid"]}]


def test_the_calls_of_migrate_pv_through_the_real_client(cluster: KubeCluster, tmp_path: Path) -> None:
    """get_pv, replace_pv (a compare-and-swap on resourceVersion), get_claim, list_pods; then
    `flexvol migrate-pv --dry-run` through a kubeconfig: the plan, and nothing written."""
    from flexvol.core import state
    from flexvol.provisioning.migration import csi_pv
    from flexvol.provisioning.migrator import Migrator
    from tests.helpers.cli import flexvol

    pv = fixture("pv-released-delete") | {"status": {"phase": "Bound"}}
    name = pv["metadata"]["name"]
    claim = fixture("claim-bound")
    node = fixture("node-worker-1")
    node["metadata"]["labels"]["topology.flexvol.io/node"] = "worker-1"
    node["status"] = {}
    Api.routes.update({
        ("GET", f"/api/v1/persistentvolumes/{name}"): (200, pv),
        ("PUT", f"/api/v1/persistentvolumes/{name}"): (409, status(409, "Conflict", "modified")),
        ("GET", "/api/v1/namespaces/shop/persistentvolumeclaims/data"): (200, claim),
        ("GET", "/api/v1/namespaces/shop/pods"): (200, {"metadata": {}, "items": []}),
        ("GET", "/api/v1/nodes"): (200, {"metadata": {}, "items": [node]}),
        ("GET", "/api/v1/nodes/worker-1"): (200, node),
    })
    assert cluster.get_pv(name) == pv
    assert cluster.get_pv("missing") is None
    assert cluster.get_claim("shop", "data") == claim
    assert cluster.get_claim("shop", "missing") is None
    assert cluster.list_pods("shop") == []
    with pytest.raises(Conflict):
        cluster.replace_pv(pv)
    assert Api.seen[-1][:2] == ("PUT", f"/api/v1/persistentvolumes/{name}")
    assert Api.seen[-1][3]["metadata"]["resourceVersion"] == pv["metadata"]["resourceVersion"]

    config = Config(str(tmp_path / "root"))
    state.ensure_dirs(config)
    record = state.new_record(name, 1 << 30, "ext4")
    state.save_record(config, record)
    Path(config.backing_file(name)).write_bytes(b"data")
    plan, _ = Migrator(cluster, config, "worker-1").plan(name)
    assert plan is not None
    host = cluster.core.api_client.configuration.host
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": host}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
        "users": [{"name": "test", "user": {"token": "secret"}}],
    }))
    Api.seen.clear()
    result = flexvol("migrate-pv", name, "--dry-run", "--node", "worker-1", "--kubeconfig",
                     str(kubeconfig), root=config.data_root)
    assert result.exit_code == 0, result.output
    assert "1. record the plan" in result.stdout and "6. wait until claim shop/data is Bound" in result.stdout
    assert json.loads(result.stdout[result.stdout.index("{"):]) == csi_pv(plan)
    assert {method for method, *_ in Api.seen} == {"GET"}
    result = flexvol("migrate-pv", name, "--node", "worker-2", "--kubeconfig", str(kubeconfig),
                     root=config.data_root)
    assert result.exit_code == 1
    assert "error: the volume is on node worker-1, and this is node worker-2" in result.stderr
    assert "Traceback" not in result.output
