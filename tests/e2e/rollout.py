"""The shipped deploy/ manifests, rendered for a test cluster (scenario 6).

Only what the test cluster needs differs from deploy/: its host paths for the shipped ones, the
image never pulled, and the agent pointed at this cluster's API server and at loopback.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.e2e.harness import REPO, Cluster

DEPLOY = REPO / "deploy"
# The paths deploy/agent.yaml names on the host (and mounts at the same paths in the pod).
PLUGIN_DIR = "/usr/libexec/kubernetes/kubelet-plugins/volume/exec"
LIB_DIR = "/opt/flexvol/lib"
DATA_ROOT = "/var/lib/flexvol"
KUBELET_ROOT = "/var/lib/kubelet"
METRICS_PORT = "9808"


def host_paths(cluster: Cluster, lib_dir: Path) -> dict[str, str]:
    return {PLUGIN_DIR: str(cluster.plugin_dir), LIB_DIR: str(lib_dir), DATA_ROOT: str(cluster.data_root),
            KUBELET_ROOT: str(cluster.kubelet_root)}


def agent_daemonset(cluster: Cluster, lib_dir: Path, metrics_port: int) -> dict:
    """deploy/agent.yaml with the cluster's paths. The agent also gets:
    - KUBERNETES_SERVICE_HOST/PORT = the API server on 127.0.0.1: the in-cluster default is the
      `kubernetes` Service's cluster IP, and no kube-proxy runs here to route it;
    - metrics on 127.0.0.1 and a free port instead of the node's address and 9808;
    - --kubelet-root (the shipped default is /var/lib/kubelet) and short capacity rounds."""
    text = (DEPLOY / "agent.yaml").read_text()
    for shipped, ours in host_paths(cluster, lib_dir).items():
        text = text.replace(shipped, ours)
    text = text.replace(METRICS_PORT, str(metrics_port))
    [daemonset] = list(yaml.safe_load_all(text))
    spec = daemonset["spec"]["template"]["spec"]
    for container in spec["initContainers"] + spec["containers"]:
        container["imagePullPolicy"] = "Never"  # imported with ctr; no registry to ask
    [agent] = spec["containers"]
    agent["args"] += ["--kubelet-root", str(cluster.kubelet_root), "--watch-seconds", "2"]
    env = [e for e in agent["env"] if e["name"] != "NODE_IP"]
    agent["env"] = [*env, {"name": "NODE_IP", "value": "127.0.0.1"},
                    {"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"},
                    {"name": "KUBERNETES_SERVICE_PORT", "value": str(cluster.api_port)}]
    rendered = json.dumps(daemonset)
    left = [path for path in (PLUGIN_DIR, LIB_DIR, DATA_ROOT, KUBELET_ROOT) if path in rendered]
    assert not left, f"host paths of deploy/agent.yaml not replaced: {left}"
    return daemonset


def image_of(daemonset: dict) -> str:
    [image] = {c["image"] for part in ("initContainers", "containers")
               for c in daemonset["spec"]["template"]["spec"][part]}
    return image
