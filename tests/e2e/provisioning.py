"""The provisioner and the node agent as host processes of a cluster, and what the dynamic
provisioning scenarios look at: events, the PVs made for a claim, the published capacity."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.e2e.claims import delete_pod, describe, wait_released
from tests.e2e.harness import REPO, Cluster, wait_for

CRD = REPO / "deploy" / "crd-nodecapacity.yaml"
# The agent publishes at most this much: small, so a claim past it is cheap to ask for.
BUDGET = "1Gi"
BUDGET_BYTES = 1 << 30
# Seconds per watch: how soon either controller notices a SIGTERM, and the agent's capacity
# updates and PV resyncs.
WATCH_SECONDS = "3"


def flexvol(cluster: Cluster) -> str:
    """The `flexvol` command install.sh put into the cluster's bin dir."""
    return str(cluster.base / "bin" / "flexvol")


def start_provisioner(cluster: Cluster, name: str = "provisioner",
                      env: dict[str, str] | None = None) -> subprocess.Popen:
    assert cluster.kubeconfig
    return cluster.spawn(name, [flexvol(cluster), "provisioner", "--kubeconfig", str(cluster.kubeconfig),
                                "--watch-seconds", WATCH_SECONDS], env=env)


def start_agent(cluster: Cluster) -> subprocess.Popen:
    assert cluster.kubeconfig
    # The harness installed the driver already (install.sh): no install step here.
    return cluster.spawn("agent", [
        flexvol(cluster), "agent", "--kubeconfig", str(cluster.kubeconfig), "--node", cluster.node_name,
        "--root", str(cluster.data_root), "--kubelet-root", str(cluster.kubelet_root), "--no-install",
        "--capacity", BUDGET, "--watch-seconds", WATCH_SECONDS])


def stop_controller(cluster: Cluster, name: str) -> None:
    proc = cluster.procs.get(name)
    cluster.stop_process(name)
    assert proc is None or proc.poll() is not None, f"{name} still runs"


def capacity(cluster: Cluster) -> dict:
    return cluster.get("nodecapacity", cluster.node_name)


def wait_capacity(cluster: Cluster, committed: int | None = None) -> dict:
    """The node's published NodeCapacity, once it shows `committed` bytes (any if None)."""
    def published() -> dict | None:
        cluster.alive("agent")
        found = capacity(cluster)
        if found and (committed is None or found.get("committedBytes") == committed):
            return found
        return None

    what = "the agent's NodeCapacity" + ("" if committed is None else f" with {committed} bytes committed")
    return wait_for(what, published, 60, on_timeout=lambda: json.dumps(capacity(cluster)) + "\n"
                    + cluster.log_tail("agent"))


def events(cluster: Cluster, kind: str, name: str, namespace: str = "default") -> list[dict]:
    out = cluster.kubectl("get", "events", "-n", namespace, "-o", "json", "--field-selector",
                          f"involvedObject.kind={kind},involvedObject.name={name}")
    return json.loads(out)["items"]


def wait_event(cluster: Cluster, kind: str, name: str, component: str, reason: str,
               timeout: float = 60) -> dict:
    def found() -> dict | None:
        return next((e for e in events(cluster, kind, name)
                     if e["source"].get("component") == component and e["reason"] == reason), None)

    return wait_for(f"event {reason} from {component} on {kind} {name}", found, timeout,
                    on_timeout=lambda: describe(cluster, kind, name) + "\n"
                    + cluster.log_tail("provisioner") + "\n" + cluster.log_tail("agent"))


def reasons(cluster: Cluster, kind: str, name: str, component: str) -> list[str]:
    return [e["reason"] for e in events(cluster, kind, name) if e["source"].get("component") == component]


def pvs_for_claim(cluster: Cluster, uid: str) -> list[dict]:
    items = json.loads(cluster.kubectl("get", "pv", "-o", "json"))["items"]
    return [pv for pv in items if (pv["spec"].get("claimRef") or {}).get("uid") == uid]


def backing_file(cluster: Cluster, volume: str) -> Path:
    return cluster.data_root / "volumes" / f"{volume}.img"


def volume_gone(cluster: Cluster, volume: str) -> bool:
    return not backing_file(cluster, volume).exists() and str(backing_file(cluster, volume)) \
        not in cluster.loops().values()


def pod_gone(cluster: Cluster, name: str) -> bool:
    return not cluster.kubectl("get", "pod", name, "--ignore-not-found", "-o", "name")


def release(cluster: Cluster, pod: str, claim: str, volume: str) -> None:
    """Delete the pod, wait for the kubelet to let go of the volume, then delete the claim (the
    claim's protection holds it until the Pod object is gone)."""
    delete_pod(cluster, pod)
    wait_released(cluster, volume)
    cluster.kubectl("delete", "pvc", claim, "--wait=false")


def wait_reclaimed(cluster: Cluster, pv_name: str, volume: str, timeout: float = 120) -> None:
    """The agent deleted the backing volume and the PV (policy Delete)."""
    wait_for(f"the agent to delete PV {pv_name} and volume {volume}",
             lambda: volume_gone(cluster, volume)
             and not cluster.kubectl("get", "pv", pv_name, "--ignore-not-found", "-o", "name"),
             timeout, on_timeout=lambda: describe(cluster, "pv", pv_name) + "\n" + cluster.log_tail("agent"))


def lease_renewal(cluster: Cluster) -> str:
    lease = cluster.get("lease", "flexvol-loop-provisioner", namespace="kube-system")
    return (lease.get("spec") or {}).get("renewTime", "")


def wait_provisioner_rounds(cluster: Cluster, since: str, rounds: int = 2) -> None:
    """Wait until the provisioner renewed its lease `rounds` times after `since` (a renewTime):
    each round renews first, so by the second one the first round's full resync is done."""
    seen: set[str] = set()

    def renewed() -> bool:
        cluster.alive("provisioner")
        stamp = lease_renewal(cluster)
        if stamp and stamp != since:
            seen.add(stamp)
        return len(seen) >= rounds

    wait_for(f"{rounds} rounds of the provisioner", renewed, 60, interval=0.2,
             on_timeout=lambda: cluster.log_tail("provisioner"))
