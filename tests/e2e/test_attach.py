"""Scenario 3: the driver in attach mode, on the node and in the controller-manager."""

from __future__ import annotations

import json

from tests.e2e.claims import (
    check_grown_by_expandfs,
    delete_pod,
    resize_xfs,
    simulate_agrees,
    wait_bound,
    wait_file,
    wait_released,
    wait_running,
)
from tests.e2e.harness import Cluster, wait_for
from tests.e2e.pods import claim, claim_pod, persistent_volume, storage_class


def attached_volumes(cluster: Cluster) -> list[str]:
    node = cluster.get("node", cluster.node_name)
    return [v["name"] for v in node.get("status", {}).get("volumesAttached") or []]


def test_attach_mount_unmount_detach(attach_cluster: Cluster) -> None:
    cluster = attach_cluster
    volume = "e2e-attach"
    cluster.apply(storage_class(), persistent_volume("pv-attach", volume), claim("data"))
    wait_bound(cluster, "data")
    cluster.apply(claim_pod("app", 'echo "attached" > /data/message', "data"))
    wait_running(cluster, "app")
    assert wait_file(cluster, volume, "message") == "attached\n"

    attached = wait_for("the node to list the attached volume", lambda: attached_volumes(cluster), 30)
    assert len(attached) == 1 and attached[0].startswith("flexvol/loop"), attached
    verbs = cluster.verbs()
    for verb in ("attach", "waitforattach", "mountdevice", "mount"):
        assert verb in verbs, verbs
    assert verbs.index("attach") < verbs.index("mountdevice") < verbs.index("mount")
    wait_for("the controller to verify the attachment", lambda: "isattached" in cluster.verbs(), 60)

    delete_pod(cluster, "app")
    wait_released(cluster, volume)
    wait_for("detach", lambda: "detach" in cluster.verbs(volume), 90,
             on_timeout=lambda: cluster.log_tail("kube-controller-manager"))
    wait_for("the node to list no attached volume", lambda: not attached_volumes(cluster), 60)
    verbs = cluster.verbs()
    last_mount = len(verbs) - 1 - verbs[::-1].index("mount")
    tail = [v for v in verbs[last_mount:] if v in ("unmount", "unmountdevice", "detach")]
    assert tail == ["unmount", "unmountdevice", "detach"], verbs
    failures = [c for c in cluster.calls() if c["status"] == "Failure"]
    assert not failures, json.dumps(failures, indent=1)


def test_resize_grows_xfs_in_attach_mode(attach_cluster: Cluster) -> None:
    calls = resize_xfs(attach_cluster, "e2e-grow-attach", "pv-grow-attach", "grow")
    check_grown_by_expandfs(calls)


def test_simulate_plans_the_calls_the_cluster_made_in_attach_mode(attach_cluster: Cluster) -> None:
    real, simulated = simulate_agrees(attach_cluster, "e2e-simulated", "pv-simulated", "simulated")
    assert real == ["attach", "waitforattach", "mountdevice", "mount", "unmount", "unmountdevice", "detach"]
    assert simulated == real
