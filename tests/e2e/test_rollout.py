"""Scenario 6: the driver rolled out by the shipped DaemonSet, from an image built offline.

The cluster starts with an empty plugin dir; deploy/'s namespace, CRD, RBAC and agent
DaemonSet are applied with kubectl (the agent rendered with this cluster's paths, see
rollout.py); the init container installs the driver, the kubelet picks it up by dynamic probe,
a claim runs on it (scenario 2), the agent publishes the node's capacity and metrics; then the
DaemonSet is deleted and what it installed on the host is removed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.e2e.claims import claim_survives_the_pod
from tests.e2e.harness import DRIVER_NAME, Cluster, free_port, wait_for
from tests.e2e.rollout import DEPLOY, agent_daemonset, image_of


def agent_pods(cluster: Cluster) -> list[dict]:
    out = cluster.kubectl("get", "pods", "-n", "flexvol", "-l", "app=flexvol-agent", "-o", "json")
    return json.loads(out)["items"]


def agent_ready(cluster: Cluster) -> dict | None:
    """The agent's pod once its init container exited 0 and the agent runs."""
    for pod in agent_pods(cluster):
        status = pod.get("status", {})
        [init] = status.get("initContainerStatuses") or [{}]
        terminated = init.get("state", {}).get("terminated")
        if terminated and terminated["exitCode"] != 0:
            logs = cluster.kubectl("logs", "-n", "flexvol", pod["metadata"]["name"], "-c", "install-driver",
                                   check=False)
            raise AssertionError(f"the install container failed: {terminated}\n{logs}")
        running = [c for c in status.get("containerStatuses") or [] if c.get("state", {}).get("running")]
        if terminated and running:
            return pod
    return None


def describe_agent(cluster: Cluster) -> str:
    return (cluster.kubectl("describe", "daemonset,pods", "-n", "flexvol", check=False)
            + "\n" + cluster.log_tail("kubelet"))


class Phases:
    """Prints how long each step took (for people; nothing is asserted on it)."""

    def __init__(self) -> None:
        self.last = time.monotonic()

    def __call__(self, what: str) -> None:
        now = time.monotonic()
        print(f"\n{what} in {now - self.last:.0f}s", flush=True)
        self.last = now


def hidden_entries(root: Path) -> list[str]:
    return [str(p) for p in root.rglob(".*")]


def test_daemonset_rolls_out_the_driver_and_a_claim_runs_on_it(bare_cluster: Cluster,
                                                                flexvol_image: Path) -> None:
    cluster = bare_cluster
    phase = Phases()
    assert list(cluster.plugin_dir.iterdir()) == []
    assert cluster.plugin_loaded() not in cluster.current_log("kubelet")
    lib_dir = cluster.base / "lib"
    metrics_port = free_port()
    daemonset = agent_daemonset(cluster, lib_dir, metrics_port)

    cluster.ctr("images", "import", str(flexvol_image))
    assert f"docker.io/library/{image_of(daemonset)}" in cluster.ctr("images", "ls", "-q").split()
    phase("image imported")
    for manifest in ("namespace.yaml", "crd-nodecapacity.yaml", "rbac.yaml"):  # as shipped
        cluster.kubectl("apply", "-f", str(DEPLOY / manifest))
    cluster.kubectl("wait", "--for=condition=established", "crd/nodecapacities.flexvol.io", "--timeout=60s")
    cluster.apply(daemonset)
    pod = wait_for("the agent's install container to finish and the agent to run",
                   lambda: agent_ready(cluster), 180, interval=1, on_timeout=lambda: describe_agent(cluster))
    phase("DaemonSet applied, driver installed, agent running")
    install_log = cluster.kubectl("logs", "-n", "flexvol", pod["metadata"]["name"], "-c", "install-driver")

    # Installed atomically: the package copied under a content-named dir, the driver renamed
    # into place from a dot-file; no temporary file or dir is left behind.
    driver = cluster.plugin_dir / "flexvol~loop" / "loop"
    assert f"driver {driver} installed" in install_log, install_log
    assert driver.is_file() and os.access(driver, os.X_OK)
    assert sorted(p.name for p in cluster.plugin_dir.iterdir()) == ["flexvol~loop"]
    assert [p.name for p in driver.parent.iterdir()] == ["loop"]
    assert hidden_entries(cluster.plugin_dir) == []
    [site] = list(lib_dir.iterdir())
    assert site.name.startswith("flexvol-0.1.0-") and hidden_entries(lib_dir) == []
    script = driver.read_text()
    assert script.startswith("#!/usr/bin/python3 -ISB\n"), script
    assert repr(str(site)) in script and repr(str(cluster.data_root)) in script, script
    # The host runs what the container placed: init answers as the kubelet will call it.
    init = subprocess.run([str(driver), "init"], capture_output=True, text=True, env={}, check=False)
    assert init.returncode == 0 and json.loads(init.stdout)["status"] == "Success", init

    # Scenario 2 on the rolled-out driver; the kubelet loads it by dynamic probe on its way.
    claim_survives_the_pod(cluster, "e2e-rollout", "pv-rollout", "rollout")
    phase("scenario 2")
    kubelet_log = cluster.current_log("kubelet")
    assert cluster.plugin_loaded() in kubelet_log, "the kubelet never loaded the driver"
    first_mount = kubelet_log.index(cluster.setup_succeeded("pv-rollout"))
    assert kubelet_log.index(cluster.plugin_loaded()) < first_mount
    # About the driver, not the flexvol namespace's pods: its name or its dir in the plugin dir.
    driver_errors = cluster.log_errors(needle=DRIVER_NAME) + cluster.log_errors(needle="flexvol~loop")
    assert driver_errors == [], cluster.errors_in_log()

    # The agent itself: this node's capacity with the volume, and metrics from its journal.
    def capacity() -> dict:
        found = json.loads(cluster.kubectl("get", "nodecapacities", cluster.node_name, "-o", "json",
                                           check=False) or "{}")
        return found if found.get("volumes", {}).get("e2e-rollout") == 64 * 2**20 else {}

    published = wait_for("the agent to publish the node's capacity with the volume", capacity, 60,
                         on_timeout=lambda: cluster.kubectl("logs", "-n", "flexvol", pod["metadata"]["name"],
                                                            "-c", "agent", check=False))
    assert published["node"] == cluster.node_name and published["capacityBytes"] > 0, published
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    sizes = [float(line.split()[-1]) for line in metrics.splitlines()
             if line.startswith('flexvol_volume_size_bytes{volume="e2e-rollout"}')]
    assert sizes == [64 * 2**20], metrics
    mounts = [line.split()[-1] for line in metrics.splitlines()
              if line.startswith("flexvol_driver_calls_total{") and 'verb="mount"' in line
              and 'status="Success"' in line]
    journal = [c for c in cluster.calls() if c["verb"] == "mount" and c["status"] == "Success"]
    assert mounts == [f"{len(journal)}.0"] and len(journal) == 2, metrics

    phase("capacity and metrics")
    # Removal: the DaemonSet goes (the agent stops on SIGTERM), then what it put on the host.
    cluster.kubectl("delete", "daemonset", "-n", "flexvol", "flexvol-agent", "--wait=false")
    wait_for("the agent's pod to go", lambda: agent_pods(cluster) == [], 120, interval=1,
             on_timeout=lambda: describe_agent(cluster))
    phase("DaemonSet deleted")
    assert driver.is_file(), "deleting the DaemonSet must leave the driver for the volumes in use"
    # The node's own python3 and the copied package, as README says, with no flexvol installed.
    removal = subprocess.run(["/usr/bin/python3", "-m", "flexvol.toolkit.plugindir", "remove", "--plugin-dir",
                              str(cluster.plugin_dir)], capture_output=True, text=True,
                             env={"PYTHONPATH": str(site)}, cwd=cluster.base, check=False)
    assert removal.returncode == 0, removal
    shutil.rmtree(lib_dir)
    assert list(cluster.plugin_dir.iterdir()) == [] and not lib_dir.exists()
