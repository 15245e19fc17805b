"""Scenarios 2, 4, 5 and 7 on a control plane: claims, resize, kubelet restart, node reboot, the
toolkit on the live node."""

from __future__ import annotations

import json

from tests.e2e.claims import (
    check_grown_by_expandfs,
    claim_survives_the_pod,
    delete_pod,
    file_in_volume,
    resize_xfs,
    simulate_agrees,
    wait_bound,
    wait_file,
    wait_released,
    wait_running,
)
from tests.e2e.harness import Cluster, wait_for
from tests.e2e.pods import claim, claim_pod, persistent_volume, storage_class


def test_claim_binds_and_data_survives_the_pod(cluster: Cluster) -> None:
    claim_survives_the_pod(cluster, "e2e-claim", "pv-claim", "data")


def test_claim_without_a_matching_volume_stays_pending(cluster: Cluster) -> None:
    # No class: only an existing PV can satisfy it (with a class, the controller would try to
    # provision and report that instead).
    cluster.apply(claim("too-big", size="5Gi", storage_class=""))

    def pending_reason() -> str:
        events = json.loads(cluster.kubectl(
            "get", "events", "-o", "json", "--field-selector",
            "involvedObject.kind=PersistentVolumeClaim,involvedObject.name=too-big"))["items"]
        return next((f"{e['source'].get('component')}: {e['reason']}: {e['message']}" for e in events), "")

    reason = wait_for("the PV controller's reason", pending_reason, 60)
    expected = "persistentvolume-controller: FailedBinding: no persistent volumes available"
    assert reason.startswith(expected), reason
    assert cluster.get("pvc", "too-big")["status"]["phase"] == "Pending"


def test_resize_grows_xfs_in_the_running_pod(cluster: Cluster) -> None:
    calls = resize_xfs(cluster, "e2e-grow", "pv-grow", "grow")
    check_grown_by_expandfs(calls)


def test_kubelet_restart_keeps_the_mount_and_unmounts_a_pod_deleted_meanwhile(cluster: Cluster) -> None:
    volume = "e2e-restart"
    cluster.apply(storage_class(), persistent_volume("pv-restart", volume), claim("restart"))
    wait_bound(cluster, "restart")
    cluster.apply(claim_pod("survivor", 'echo "before the restart" > /data/message', "restart"))
    wait_running(cluster, "survivor")
    assert wait_file(cluster, volume, "message") == "before the restart\n"
    mounts_before = cluster.volume_mounts(volume)
    calls_before = len(cluster.calls())

    cluster.restart_kubelet()
    # The restarted kubelet finds the volume set up already (it checks the mount point itself).
    wait_for("the restarted kubelet to confirm the pod's volume",
             lambda: cluster.setup_succeeded("pv-restart") in cluster.current_log("kubelet"),
             120, on_timeout=cluster.errors_in_log)
    assert cluster.volume_mounts(volume) == mounts_before
    assert [c["verb"] for c in cluster.calls()[calls_before:] if c["verb"] != "init"] == []

    cluster.stop_kubelet()
    delete_pod(cluster, "survivor")
    # Nobody is there to tear the volume down: it stays mounted until the kubelet is back.
    assert cluster.volume_mounts(volume) == mounts_before
    cluster.restart_kubelet()
    wait_released(cluster, volume)
    unmounts = [c for c in cluster.calls()[calls_before:] if c["verb"] == "unmount"]
    assert unmounts and all(c["status"] == "Success" for c in unmounts), unmounts


def test_after_a_simulated_reboot_the_pod_comes_back_with_its_data(cluster: Cluster) -> None:
    volume = "e2e-reboot"
    cluster.apply(storage_class(), persistent_volume("pv-reboot", volume), claim("reboot"))
    wait_bound(cluster, "reboot")
    # Each start of the container appends a line: the second start must see the first one's.
    cluster.apply(claim_pod("rebooted", "echo started >> /data/starts", "reboot"))
    wait_running(cluster, "rebooted")
    assert wait_file(cluster, volume, "starts") == "started\n"
    calls_before = len(cluster.calls())

    cluster.simulate_reboot()
    starts = wait_for("the pod to start again on its volume",
                      lambda: (t := file_in_volume(cluster, volume, "starts")).count("started") == 2 and t,
                      180, on_timeout=cluster.errors_in_log)
    assert starts == "started\nstarted\n"
    assert "mount" in [c["verb"] for c in cluster.calls()[calls_before:]]
    delete_pod(cluster, "rebooted")
    wait_released(cluster, volume)


def test_the_toolkit_on_the_live_node(cluster: Cluster) -> None:
    """Scenario 7: doctor, ls and calls against the node the cluster is using."""
    volume = "e2e-toolkit"
    cluster.apply(storage_class(), persistent_volume("pv-toolkit", volume), claim("toolkit"))
    wait_bound(cluster, "toolkit")
    cluster.apply(claim_pod("inspected", "echo hi > /data/message", "toolkit"))
    wait_running(cluster, "inspected")
    wait_file(cluster, volume, "message")
    flexvol = [str(cluster.base / "bin" / "flexvol")]
    where = ["--root", str(cluster.data_root)]

    doctor = cluster.run([*flexvol, "doctor", "--json", *where, "--kubelet-root", str(cluster.kubelet_root)],
                         check=False)
    checks = json.loads(doctor.stdout)
    assert doctor.returncode == 0, checks
    assert not [c for c in checks if c["status"] == "FAIL"], checks
    # No --plugin-dir given: it is the one on the running kubelet's command line.
    assert any(str(cluster.plugin_dir) in c["detail"] for c in checks), checks

    volumes = json.loads(cluster.run([*flexvol, "ls", "--json", *where,
                                      "--kubelet-root", str(cluster.kubelet_root)]).stdout)
    [listed] = [v for v in volumes if v["volume_id"] == volume]
    pod_uid = cluster.get("pod", "inspected")["metadata"]["uid"]
    assert [m["path"] for m in listed["mounts"]] == cluster.volume_mounts(volume)
    assert [m["pod"] for m in listed["mounts"]] in (["default/inspected"], [pod_uid]), listed

    calls = json.loads(cluster.run([*flexvol, "calls", "--json", *where, "--volume", volume]).stdout)
    journal = [c["verb"] for c in cluster.calls() if c["volume"] == volume]
    assert [c["verb"] for c in calls] == journal == ["mount"], calls
    delete_pod(cluster, "inspected")
    wait_released(cluster, volume)


def test_simulate_plans_the_calls_the_cluster_made(cluster: Cluster) -> None:
    real, simulated = simulate_agrees(cluster, "e2e-simulated", "pv-simulated", "simulated")
    assert real == ["mount", "unmount"]
    assert simulated == real
