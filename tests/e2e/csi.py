"""`flexvol csi` on a real cluster: the plugin as a host process registering itself with the
kubelet, the CSI sidecars of deploy/csi beside it (tests/e2e/sidecars.py), and the objects the
CSI scenarios create."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from tests.e2e import sidecars
from tests.e2e.claims import delete_pod, describe, file_in_volume, wait_released
from tests.e2e.harness import APP_IMAGE, REPO, Cluster, wait_for
from tests.e2e.pods import KEEP_RUNNING, claim

DRIVER = "loop.flexvol.io"
NAMESPACE = "flexvol"
CSI_DIR = REPO / "deploy" / "csi"
TOPOLOGY_KEY = "topology.flexvol.io/node"


def plugin_socket(cluster: Cluster) -> Path:
    return cluster.kubelet_root / "plugins" / DRIVER / "csi.sock"


def flexvol(cluster: Cluster) -> str:
    return str(cluster.base / "bin" / "flexvol")


def start_plugin(cluster: Cluster) -> None:
    """`flexvol csi` with plugin.yaml's flags, paths under the cluster's root; waits until the
    kubelet has registered it (the CSINode object lists the driver)."""
    socket = plugin_socket(cluster)
    socket.parent.mkdir(parents=True, exist_ok=True)
    registry = cluster.kubelet_root / "plugins_registry"
    registry.mkdir(exist_ok=True)
    cluster.spawn("csi", [flexvol(cluster), "csi", "--endpoint", f"unix://{socket}",
                          "--node-id", cluster.node_name, "--registration-dir", str(registry),
                          "--root", str(cluster.data_root), "--verbose"])
    wait_for("the kubelet to register the CSI plugin", lambda: cluster.alive("csi") and registered(cluster),
             60, on_timeout=lambda: cluster.log_tail("csi") + "\n" + cluster.errors_in_log(needle=DRIVER))


def registered(cluster: Cluster) -> bool:
    node = cluster.get("csinode", cluster.node_name)
    return any(d["name"] == DRIVER for d in (node.get("spec") or {}).get("drivers") or [])


def stop_plugin(cluster: Cluster) -> None:
    cluster.stop_process("csi")


def start_sidecar(cluster: Cluster, name: str, bin_dir: Path) -> sidecars.Sidecar:
    assert cluster.kubeconfig
    return sidecars.start(name, bin_dir=bin_dir, socket=plugin_socket(cluster), kubeconfig=cluster.kubeconfig,
                          node_name=cluster.node_name, namespace=NAMESPACE, log_dir=cluster.logs)


def csi_class(name: str, reclaim: str = "Delete", fs_type: str | None = None,
              binding: str = "WaitForFirstConsumer") -> dict:
    """deploy/csi/storageclass.yaml under another name, with its parameters."""
    import yaml

    spec = yaml.safe_load((CSI_DIR / "storageclass.yaml").read_text())
    spec["metadata"] = {"name": name}
    spec["reclaimPolicy"] = reclaim
    spec["volumeBindingMode"] = binding
    if fs_type:
        spec["parameters"]["csi.storage.k8s.io/fstype"] = fs_type
    return spec


def block_claim(name: str, storage_class: str, size: str = "64Mi") -> dict:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": storage_class,
                     "volumeMode": "Block", "resources": {"requests": {"storage": size}}}}


def block_pod(name: str, script: str, claim: str) -> dict:
    """A pod with the claim as the raw device /dev/xvda."""
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "hostNetwork": True, "automountServiceAccountToken": False, "terminationGracePeriodSeconds": 2,
            "containers": [{"name": "app", "image": APP_IMAGE, "imagePullPolicy": "Never",
                            "command": ["sh", "-c", f"{script}\n{KEEP_RUNNING}"],
                            "volumeDevices": [{"name": "data", "devicePath": "/dev/xvda"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
        },
    }


def pod_log(cluster: Cluster, name: str) -> str:
    return cluster.kubectl("logs", name, check=False)


def wait_log(cluster: Cluster, name: str, text: str, timeout: float = 120) -> str:
    return wait_for(f"{text!r} in pod {name}'s log", lambda: text in (log := pod_log(cluster, name)) and log,
                    timeout, on_timeout=lambda: describe(cluster, "pod", name) + "\n" + pod_log(cluster, name)
                    + "\n" + cluster.log_tail("csi"))


def bound_pv(cluster: Cluster, claim: str) -> dict:
    name = cluster.get("pvc", claim)["spec"]["volumeName"]
    return cluster.get("pv", name)


def pv_gone(cluster: Cluster, name: str) -> bool:
    return not cluster.kubectl("get", "pv", name, "--ignore-not-found", "-o", "name")


def backing(cluster: Cluster, volume: str) -> Path:
    return cluster.data_root / "volumes" / f"{volume}.img"


def volume_loops(cluster: Cluster, volume: str) -> list[str]:
    return [dev for dev, path in cluster.loops().items() if path == str(backing(cluster, volume))]


def capacities(cluster: Cluster) -> list[dict]:
    out = cluster.kubectl("get", "csistoragecapacities", "-n", NAMESPACE, "-o", "json")
    return json.loads(out)["items"]


def sidecar_tail(running: list[sidecars.Sidecar]) -> str:
    return sidecars.collect_logs(running, 30)


def install_snapshot_crds(cluster: Cluster, bin_dir: Path) -> None:
    """The snapshot CRDs of the snapshotter's release, established. The group snapshot ones too:
    without them the snapshot-controller retries listing VolumeGroupSnapshots for 30 s first."""
    for crd in sorted(sidecars.crd_dir(bin_dir).glob("*.yaml")):
        cluster.kubectl("apply", "-f", str(crd))
    cluster.kubectl("wait", "--for=condition=established", "--timeout=60s",
                    "crd/volumesnapshots.snapshot.storage.k8s.io",
                    "crd/volumesnapshotcontents.snapshot.storage.k8s.io",
                    "crd/volumesnapshotclasses.snapshot.storage.k8s.io")


def start_resizer(cluster: Cluster, bin_dir: Path) -> None:
    """csi-resizer beside the plugin, as deploy/csi does not run it (README, CSI: no per-node
    mode). On a one-node cluster the one resizer calls the node's own plugin, which holds every
    volume, so ControllerExpandVolume reaches the right pool."""
    assert cluster.kubeconfig
    cluster.spawn("csi-resizer", [str(bin_dir / "csi-resizer"), f"--csi-address={plugin_socket(cluster)}",
                                  f"--kubeconfig={cluster.kubeconfig}", "--leader-election=false", "--v=2"])


def _cached_sidecars() -> bool:
    """Whether scripts/csi-sidecars-build.sh has already built its pinned releases here (any Go
    version): then build() only prints the bin dir."""
    script = sidecars.BUILD_SCRIPT.read_text()
    found = dict(re.findall(r'^(PROVISIONER|RESIZER|SNAPSHOTTER)_VERSION="([^"]+)"', script, re.M))
    parent = Path(os.environ.get("FLEXVOL_CSI_SIDECARS_CACHE", "/var/cache/flexvol-csi-sidecars"))
    key = (f"provisioner-{found.get('PROVISIONER')}.resizer-{found.get('RESIZER')}"
           f".snapshotter-{found.get('SNAPSHOTTER')}.")
    return any(parent.glob(f"{key}*/bin/.complete"))


def sidecars_bin_dir() -> tuple[Path | None, str]:
    """The sidecars' bin dir, or None and why the CSI scenarios are left out. FLEXVOL_E2E_CSI:
    `auto` (the default) runs them when the sidecars are built already, `build` builds them
    first (about 15 cold minutes on two cores), `0` leaves them out."""
    mode = os.environ.get("FLEXVOL_E2E_CSI", "auto")
    if mode == "0":
        return None, "FLEXVOL_E2E_CSI=0"
    if mode == "auto" and not _cached_sidecars():
        return None, (f"the CSI sidecars are not built on this machine: run {sidecars.BUILD_SCRIPT.name} "
                      "once (about 15 minutes cold) or set FLEXVOL_E2E_CSI=build")
    return sidecars.build(), ""


def provisioner_log(cluster: Cluster) -> str:
    return sidecars.collect_logs(cluster.csi_sidecars, 40)  # type: ignore[attr-defined]


def wait_claim_bound(cluster: Cluster, name: str) -> dict:
    return wait_for(f"claim {name} to bind",
                    lambda: (c := cluster.get("pvc", name)).get("status", {}).get("phase") == "Bound" and c,
                    120, on_timeout=lambda: describe(cluster, "pvc", name) + "\n" + provisioner_log(cluster)
                    + "\n" + cluster.log_tail("csi"))


def volume_of(pv: dict) -> str:
    return pv["spec"]["csi"]["volumeHandle"]


def release_pod(cluster: Cluster, name: str, volume: str) -> None:
    delete_pod(cluster, name)
    wait_released(cluster, volume)
    wait_for(f"pod {name} to go", lambda: not cluster.kubectl("get", "pod", name, "--ignore-not-found",
                                                             "-o", "name"), 60)


def published(cluster: Cluster, storage_class: str) -> dict | None:
    """This node's CSIStorageCapacity object for the class, once it has a capacity."""
    for item in capacities(cluster):
        labels = ((item.get("nodeTopology") or {}).get("matchLabels") or {})
        mine = labels == {TOPOLOGY_KEY: cluster.node_name}
        if item["storageClassName"] == storage_class and mine and item.get("capacity"):
            return item
    return None


# Appends a line to /data/ticks every half second: a pod that keeps using its volume.
TICK_SCRIPT = 'trap "exit 0" TERM\nwhile true; do date +%s%N >> /data/ticks; sleep 0.5; done'


def ticks(cluster: Cluster, volume: str) -> int:
    return len(file_in_volume(cluster, volume, "ticks").splitlines())


def restart_exited_sidecars(cluster: Cluster) -> list[str]:
    """Start again the sidecars that exited: they exit once they find the plugin's socket gone
    ("Lost connection to CSI driver, exiting"), and in the DaemonSet the kubelet restarts their
    containers; here the test does. The names of those restarted."""
    bin_dir = sidecars.build()
    running = cluster.csi_sidecars  # type: ignore[attr-defined]
    restarted = []
    for index, sidecar in enumerate(running):
        if not sidecar.alive():
            running[index] = start_sidecar(cluster, sidecar.name, bin_dir)
            restarted.append(sidecar.name)
    resizer = cluster.procs.get("csi-resizer")
    if resizer is None or resizer.poll() is not None:
        start_resizer(cluster, bin_dir)
        restarted.append("csi-resizer")
    return restarted


def snapshot(name: str, claim_name: str) -> dict:
    return {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"volumeSnapshotClassName": "flexvol-csi",
                     "source": {"persistentVolumeClaimName": claim_name}}}


def restored_claim(name: str, snapshot_name: str, storage_class: str, size: str = "64Mi") -> dict:
    spec = claim(name, size=size, storage_class=storage_class)
    spec["spec"]["dataSource"] = {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot",
                                  "name": snapshot_name}
    return spec


def plugin_log_mark(cluster: Cluster) -> int:
    """Where the plugin's log ends now: plugin_calls reads what comes after it."""
    path = cluster.logs / "csi.log"
    return path.stat().st_size if path.exists() else 0


_CALL = re.compile(r"\b(Node\w+|CreateVolume|DeleteVolume) (\S+) (\w+) [\d.]+ms")


def plugin_calls(cluster: Cluster, mark: int, volume: str) -> list[str]:
    """The plugin's calls for `volume` logged since `mark`, as "NodeStageVolume OK"."""
    with open(cluster.logs / "csi.log", "rb") as log:
        log.seek(mark)
        text = log.read().decode(errors="replace")
    return [f"{m[1]} {m[3]}" for m in _CALL.finditer(text) if m[2] == volume]


def plugin_failures(cluster: Cluster, mark: int, volume: str) -> list[str]:
    return [call for call in plugin_calls(cluster, mark, volume) if not call.endswith(" OK")]


def target_records(cluster: Cluster, volume: str) -> list[str]:
    """The mount dirs the plugin has recorded for `volume` (state/targets)."""
    from flexvol.core import layout
    from flexvol.core.config import Config

    return sorted(target.path for _path, target in layout.iter_targets(Config(str(cluster.data_root)))
                  if target.volume_id == volume)


def node_logs(cluster: Cluster) -> str:
    """For a failure message: the kubelet's errors about the driver and the plugin's last lines."""
    return cluster.errors_in_log(needle=DRIVER) + "\n" + cluster.log_tail("csi")


def clone_claim(name: str, source: str, storage_class: str, size: str = "64Mi") -> dict:
    spec = claim(name, size=size, storage_class=storage_class)
    spec["spec"]["dataSource"] = {"kind": "PersistentVolumeClaim", "name": source}
    return spec


def delete_claims(cluster: Cluster, *pairs: tuple[str, str]) -> None:
    """Delete each (claim, volume) and wait until its PV and backing file are gone."""
    for claim_name, vol in pairs:
        pv_name = cluster.get("pvc", claim_name)["spec"]["volumeName"]
        cluster.kubectl("delete", "pvc", claim_name, "--wait=false")
        wait_for(f"volume {vol} to be deleted",
                 lambda pv_name=pv_name, vol=vol: pv_gone(cluster, pv_name)
                 and not backing(cluster, vol).exists(),
                 120, on_timeout=lambda: provisioner_log(cluster) + node_logs(cluster))
        assert not volume_loops(cluster, vol) and not target_records(cluster, vol)
