"""Resolve each pod volume the way the cluster would, into what the node will be asked to do."""

from __future__ import annotations

import base64
import json
import os
import uuid
from dataclasses import dataclass, field

from flexvol.simulate.binding import Binding, bind
from flexvol.simulate.manifests import Manifests, name_of, namespace_of, spec_of


@dataclass
class PodVolume:
    name: str
    driver: str = ""
    # pvOrVolumeName: the PV's name, or the volume's name inside the pod (docs/flexvolume.md section 4).
    pv_or_volume_name: str = ""
    pv: str = ""
    binding: Binding | None = None
    fs_type: str = ""
    read_only: bool = False
    options: dict[str, str] = field(default_factory=dict)
    # Mount-only keys: pod identity, secrets (base64), fsGroup.
    mount_extra: dict[str, str] = field(default_factory=dict)
    # Why the node would never call the driver for this volume ("" when it would).
    problem: str = ""

    @property
    def runnable(self) -> bool:
        return not self.problem


@dataclass
class PodPlan:
    pod: str
    uid: str
    node_name: str
    volumes: list[PodVolume]


def plan(manifests: Manifests, node_name: str) -> list[PodPlan]:
    plans = []
    for pod in manifests.pods:
        metadata = pod.get("metadata") or {}
        uid = str(metadata.get("uid") or uuid.uuid4())
        spec = spec_of(pod)
        volumes = [_resolve(pod, volume, manifests) for volume in spec.get("volumes") or []]
        plans.append(PodPlan(f"{namespace_of(pod)}/{name_of(pod)}", uid,
                             str(spec.get("nodeName") or node_name), volumes))
    return plans


def _resolve(pod: dict, volume: dict, manifests: Manifests) -> PodVolume:
    namespace = namespace_of(pod)
    found = PodVolume(name=str(volume.get("name", "")))
    flex: dict | None = volume.get("flexVolume")
    secret_namespace = namespace
    if flex is not None:
        found.pv_or_volume_name = found.name
        found.read_only = bool(flex.get("readOnly", False))
    elif volume.get("persistentVolumeClaim"):
        source = volume["persistentVolumeClaim"]
        found.read_only = bool(source.get("readOnly", False))
        found.binding = bind(str(source.get("claimName", "")), namespace, manifests)
        pv = found.binding.pv
        if pv is None:
            found.problem = f"claim {found.binding.claim} binds to no volume"
            return found
        found.pv = found.pv_or_volume_name = name_of(pv)
        flex = spec_of(pv).get("flexVolume")
        if flex is None:
            found.problem = f"volume {found.pv} is not a flexVolume"
            return found
        if spec_of(pv).get("mountOptions"):
            found.problem = (f"volume {found.pv} sets mountOptions: \"Mount options are not supported "
                             "for this volume type\"")
            return found
        secret_namespace = str((flex.get("secretRef") or {}).get("namespace") or namespace)
    else:
        found.problem = "not a flexVolume"
        return found
    found.driver = str(flex.get("driver", ""))
    found.fs_type = str(flex.get("fsType") or "")
    found.options = {str(key): str(value) for key, value in (flex.get("options") or {}).items()}
    found.mount_extra = _mount_keys(pod)
    secret_ref = flex.get("secretRef")
    if secret_ref:
        secret_name = str(secret_ref.get("name", ""))
        secrets, problem = _secrets(secret_name, secret_namespace, found.driver, manifests)
        if problem:
            found.problem = problem
        found.mount_extra.update(secrets)
    return found


def _mount_keys(pod: dict) -> dict[str, str]:
    metadata, spec = pod.get("metadata") or {}, spec_of(pod)
    keys = {
        "kubernetes.io/pod.name": name_of(pod),
        "kubernetes.io/pod.namespace": namespace_of(pod),
        "kubernetes.io/serviceAccount.name": str(spec.get("serviceAccountName") or "default"),
    }
    if metadata.get("uid"):
        keys["kubernetes.io/pod.uid"] = str(metadata["uid"])
    fs_group = (spec.get("securityContext") or {}).get("fsGroup")
    if fs_group is not None:
        keys["kubernetes.io/mounterArgs.FsGroup"] = str(fs_group)
    return keys


def _secrets(name: str, namespace: str, driver: str, manifests: Manifests) -> tuple[dict[str, str], str]:
    secret = next((item for item in manifests.secrets
                   if name_of(item) == name and namespace_of(item) == namespace), None)
    if secret is None:
        return {}, f"secret {namespace}/{name} is in none of the manifests; mount would fail"
    if secret.get("type") != driver:
        return {}, (f"secret {namespace}/{name} has type {secret.get('type')!r}; the kubelet requires the "
                    f"driver name {driver!r}")
    values = {f"kubernetes.io/secret/{key}": str(value) for key, value in (secret.get("data") or {}).items()}
    for key, value in (secret.get("stringData") or {}).items():
        values[f"kubernetes.io/secret/{key}"] = base64.b64encode(str(value).encode()).decode()
    return values, ""


def driver_path(driver: str, plugin_dir: str) -> str:
    """<plugin dir>/<vendor>~<driver>/<driver> (docs/flexvolume.md section 1)."""
    directory = driver.replace("/", "~")
    return os.path.join(plugin_dir, directory, driver.rsplit("/", 1)[-1])


def _kubernetes_keys(volume: PodVolume) -> dict[str, str]:
    return {
        "kubernetes.io/fsType": volume.fs_type,
        "kubernetes.io/readwrite": "ro" if volume.read_only else "rw",
        "kubernetes.io/pvOrVolumeName": volume.pv_or_volume_name,
    }


def base_options(volume: PodVolume) -> dict[str, str]:
    """What every call but mount gets (docs/flexvolume.md section 4): flexVolume.options merged last."""
    return {**_kubernetes_keys(volume), **volume.options}


def mount_options(volume: PodVolume, pod_uid: str) -> dict[str, str]:
    """mount's options: pod identity, secrets and fsGroup too; flexVolume.options still last."""
    return {**_kubernetes_keys(volume), "kubernetes.io/pod.uid": pod_uid, **volume.mount_extra,
            **volume.options}


def dry_steps(plan_: PodPlan, volume: PodVolume, kubelet_root: str) -> list[tuple[str, str, list[str]]]:
    """The calls the flow would make, with placeholders for what only the driver can tell."""
    base = json.dumps(base_options(volume))
    mount = json.dumps(mount_options(volume, plan_.uid))
    plugin = os.path.join(kubelet_root, "plugins", "kubernetes.io", "flexvolume", volume.driver, "mounts",
                          volume.pv_or_volume_name)
    pod_dir = os.path.join(kubelet_root, "pods", plan_.uid, "volumes", volume.driver.replace("/", "~"),
                           volume.pv_or_volume_name)
    device = "<device from attach>"
    return [
        ("kubelet", "always", ["init"]),
        ("controller-manager", "if attachable", ["attach", base, plan_.node_name]),
        ("kubelet", "if attachable", ["waitforattach", device, base]),
        ("kubelet", "if attachable", ["mountdevice", plugin, device, base]),
        ("kubelet", "always", ["mount", pod_dir, mount]),
        ("kubelet", "teardown", ["unmount", pod_dir]),
        ("kubelet", "teardown, if attachable", ["unmountdevice", plugin]),
        ("controller-manager", "teardown, if attachable",
         ["detach", volume.pv_or_volume_name, plan_.node_name]),
    ]
