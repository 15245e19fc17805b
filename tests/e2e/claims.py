"""Steps the control-plane scenarios share: wait for pods, claims and the volume's release."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from tests.e2e.harness import Cluster, wait_for
from tests.e2e.pods import claim, claim_pod, persistent_volume, storage_class


def pod_phase(cluster: Cluster, name: str) -> str:
    return cluster.get("pod", name).get("status", {}).get("phase", "")


def describe(cluster: Cluster, kind: str, name: str) -> str:
    return cluster.kubectl("describe", kind, name, check=False) + "\n" + cluster.errors_in_log()


def wait_running(cluster: Cluster, name: str, timeout: float = 180) -> None:
    wait_for(f"pod {name} to run", lambda: pod_phase(cluster, name) == "Running", timeout,
             on_timeout=lambda: describe(cluster, "pod", name))


def file_in_volume(cluster: Cluster, volume: str, name: str) -> str:
    for mount_point in cluster.volume_mounts(volume):
        path = Path(mount_point) / name
        if path.exists():
            return path.read_text()
    return ""


def wait_file(cluster: Cluster, volume: str, name: str, timeout: float = 120) -> str:
    return wait_for(f"{name} in volume {volume}", lambda: file_in_volume(cluster, volume, name), timeout,
                    on_timeout=cluster.errors_in_log)


def released(cluster: Cluster, volume: str) -> bool:
    backing = str(cluster.data_root / "volumes" / f"{volume}.img")
    return not cluster.volume_mounts(volume) and backing not in cluster.loops().values()


def wait_released(cluster: Cluster, volume: str, timeout: float = 120) -> None:
    wait_for(f"volume {volume} to be unmounted and its loop device released",
             lambda: released(cluster, volume), timeout, on_timeout=cluster.errors_in_log)


def delete_pod(cluster: Cluster, name: str) -> None:
    # The Pod object can take a while to go after its volumes are torn down: do not wait for it.
    cluster.kubectl("delete", "pod", name, "--wait=false")


def wait_bound(cluster: Cluster, claim: str, timeout: float = 60) -> dict:
    return wait_for(f"claim {claim} to bind",
                    lambda: (c := cluster.get("pvc", claim)).get("status", {}).get("phase") == "Bound" and c,
                    timeout, on_timeout=lambda: describe(cluster, "pvc", claim))


def claim_survives_the_pod(cluster: Cluster, volume: str, pv_name: str, claim_name: str) -> None:
    """Scenario 2: a PV binds to a claim; a pod writes, is deleted (the volume released), a new
    pod on the same claim reads the data back; the driver reported no failure."""
    calls_before = len(cluster.calls())
    cluster.apply(storage_class(), persistent_volume(pv_name, volume), claim(claim_name))
    bound = wait_bound(cluster, claim_name)
    assert bound["spec"]["volumeName"] == pv_name
    assert cluster.get("pv", pv_name)["status"]["phase"] == "Bound"

    writer, reader = f"{claim_name}-writer", f"{claim_name}-reader"
    cluster.apply(claim_pod(writer, 'echo "written through a claim" > /data/message', claim_name))
    wait_running(cluster, writer)
    assert wait_file(cluster, volume, "message") == "written through a claim\n"
    assert cluster.verbs(volume) == ["mount"]

    delete_pod(cluster, writer)
    wait_released(cluster, volume)
    assert any(c["verb"] == "unmount" and c["volume"] == volume and c["status"] == "Success"
               for c in cluster.calls()[calls_before:])

    cluster.apply(claim_pod(reader, "cat /data/message > /data/seen", claim_name))
    wait_running(cluster, reader)
    assert wait_file(cluster, volume, "seen") == "written through a claim\n"
    delete_pod(cluster, reader)
    wait_released(cluster, volume)
    failures = [c for c in cluster.calls()[calls_before:] if c["status"] == "Failure"]
    assert not failures, json.dumps(failures, indent=1)


def capacity_bytes(mount_point: str) -> int:
    st = os.statvfs(mount_point)
    return st.f_blocks * st.f_frsize


# A container that reports its own view of the filesystem every second, in /data/df.
DF_SCRIPT = ('trap "exit 0" TERM\n'
             'while true; do df -k /data > /data/df.new && mv /data/df.new /data/df; sleep 1; done')


def grow_to_400mi(cluster: Cluster, claim_name: str, pv_name: str, volume: str, mount_point: str) -> None:
    """Raise the claim's request to 400Mi; wait until the claim, the PV, the mount (by more than
    80 MiB) and the container running DF_SCRIPT all show the growth."""
    before = capacity_bytes(mount_point)
    cluster.kubectl("patch", "pvc", claim_name, "-p",
                    json.dumps({"spec": {"resources": {"requests": {"storage": "400Mi"}}}}))
    wait_for("the claim's capacity to reach 400Mi",
             lambda: cluster.get("pvc", claim_name)["status"].get("capacity", {}).get("storage") == "400Mi",
             120, on_timeout=lambda: describe(cluster, "pvc", claim_name))
    assert cluster.get("pv", pv_name)["spec"]["capacity"]["storage"] == "400Mi"
    after = capacity_bytes(mount_point)
    assert after > before + 80 * 2**20, (before, after)

    def pod_sees_growth() -> bool:
        line = file_in_volume(cluster, volume, "df").splitlines()[-1].split()
        return int(line[1]) * 1024 >= after - 2**20

    wait_for("the container to see the grown filesystem", pod_sees_growth, 30)


def check_grown_by_expandfs(calls: list[dict]) -> None:
    """Kubernetes (1.20 and 1.37 alike) grows a FlexVolume with expandfs on the node, never
    expandvolume."""
    verbs = [c["verb"] for c in calls]
    assert "expandfs" in verbs and "expandvolume" not in verbs, verbs
    expand = next(c for c in calls if c["verb"] == "expandfs")
    assert expand["status"] == "Success", expand


def resize_xfs(cluster: Cluster, volume: str, pv_name: str, claim_name: str) -> list[dict]:
    """Raise a running pod's xfs claim from 300Mi to 400Mi; returns the driver's calls since."""
    cluster.apply(storage_class(), persistent_volume(pv_name, volume, size="300Mi", fs_type="xfs"),
                  claim(claim_name, size="300Mi"))
    wait_bound(cluster, claim_name)
    pod_name = f"{claim_name}-app"
    cluster.apply(claim_pod(pod_name, DF_SCRIPT, claim_name))
    wait_running(cluster, pod_name)
    wait_file(cluster, volume, "df")
    # In attach mode the device is also mounted once for the node: measure the pod's mount.
    [mount_point] = [m for m in cluster.volume_mounts(volume) if "/pods/" in m]
    seen_before = len(cluster.calls())
    grow_to_400mi(cluster, claim_name, pv_name, volume, mount_point)
    delete_pod(cluster, pod_name)
    wait_released(cluster, volume)
    return cluster.calls()[seen_before:]


def simulated_verbs(cluster: Cluster, objects: list[dict]) -> list[str]:
    """The calls `flexvol simulate` makes for these objects, with the cluster's installed driver
    pointed at a data root of its own."""
    scratch = Path(tempfile.mkdtemp(prefix="simulate-", dir=cluster.base))
    manifest = scratch / "objects.yaml"
    manifest.write_text("\n---\n".join(json.dumps(o) for o in objects))
    done = cluster.run([str(cluster.base / "bin" / "flexvol"), "simulate", "-f", str(manifest), "--json",
                        "--driver", str(cluster.plugin_dir / "flexvol~loop" / "loop"),
                        "--env", f"FLEXVOL_ROOT={scratch / 'root'}", "--tmp-dir", str(scratch),
                        "--node-name", cluster.node_name], check=False)
    [result] = json.loads(done.stdout)
    assert done.returncode == 0 and not result["outcome"]["error"], done.stdout + done.stderr
    return [step["verb"] for step in result["outcome"]["steps"]]


def simulate_agrees(cluster: Cluster, volume: str, pv_name: str, claim_name: str) -> tuple[list, list]:
    """Scenario 8: run a PV + claim + pod through the cluster, then the same objects through
    `flexvol simulate`; returns (real, simulated) verbs. isattached is the controller's periodic
    check, so how often it comes depends on time: it is left out of both, as is init, which the
    driver does not journal."""
    objects = [storage_class(), persistent_volume(pv_name, volume), claim(claim_name)]
    pod = claim_pod(f"{claim_name}-app", "echo hi > /data/message", claim_name)
    cluster.apply(*objects)
    wait_bound(cluster, claim_name)
    calls_before = len(cluster.calls())
    cluster.apply(pod)
    wait_running(cluster, pod["metadata"]["name"])
    delete_pod(cluster, pod["metadata"]["name"])
    wait_released(cluster, volume)
    attachable = any(c["verb"] == "attach" for c in cluster.calls()[calls_before:])
    if attachable:
        wait_for(f"detach of {volume}", lambda: any(c["verb"] == "detach" and c["volume"] == volume
                                                    for c in cluster.calls()[calls_before:]), 90)
    skip = ("init", "isattached")
    real = first_waitforattach([c["verb"] for c in cluster.calls()[calls_before:]
                                if c["volume"] == volume and c["verb"] not in skip])
    simulated = [v for v in simulated_verbs(cluster, [*objects, pod]) if v not in skip]
    return real, simulated


def first_waitforattach(verbs: list[str]) -> list[str]:
    """The verbs without repeated waitforattach calls. The kubelet calls waitforattach on every
    pass of its mount operation and skips mountdevice and mount when both are already mounted,
    so a second pass (the volume manager's reconciler sometimes runs one for a pod already set
    up, seen about once in several runs here) adds a waitforattach and nothing else."""
    seen = False
    kept = []
    for verb in verbs:
        if verb == "waitforattach":
            if seen:
                continue
            seen = True
        kept.append(verb)
    return kept
