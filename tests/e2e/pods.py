"""Pod, volume and claim objects the scenarios create (plain dicts, applied as JSON)."""

from __future__ import annotations

from tests.e2e.harness import APP_IMAGE, DRIVER_NAME

# The shell leaves on SIGTERM at once (PID 1 ignores signals it has no handler for).
KEEP_RUNNING = 'trap "exit 0" TERM; while true; do sleep 1; done'


def flex_volume(volume_id: str, size: str = "64Mi", fs_type: str = "ext4") -> dict:
    return {"driver": DRIVER_NAME, "fsType": fs_type, "options": {"volumeID": volume_id, "size": size}}


def pod(name: str, script: str, volume: dict, namespace: str = "default") -> dict:
    """A host-network busybox pod that runs `script` with the volume at /data, then stays up."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "hostNetwork": True,
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 2,
            "containers": [{
                "name": "app",
                "image": APP_IMAGE,
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", f"{script}\n{KEEP_RUNNING}"],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            }],
            "volumes": [{"name": "data", **volume}],
        },
    }


def inline_pod(name: str, script: str, volume_id: str, **kw: str) -> dict:
    return pod(name, script, {"flexVolume": flex_volume(volume_id, **kw)})


def claim_pod(name: str, script: str, claim: str) -> dict:
    return pod(name, script, {"persistentVolumeClaim": {"claimName": claim}})


def persistent_volume(name: str, volume_id: str, size: str = "64Mi", fs_type: str = "ext4",
                      storage_class: str = "flexvol") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": storage_class,
            "flexVolume": flex_volume(volume_id, size, fs_type),
        },
    }


def claim(name: str, size: str = "64Mi", storage_class: str = "flexvol") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": storage_class,
                 "resources": {"requests": {"storage": size}}},
    }


def storage_class(name: str = "flexvol", expandable: bool = True) -> dict:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name},
        "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "Immediate",
        "allowVolumeExpansion": expandable,
    }


def provisioned_class(name: str, binding: str = "WaitForFirstConsumer", reclaim: str = "Delete",
                      fs_type: str | None = None, expandable: bool = False) -> dict:
    """A StorageClass whose claims flexvol's provisioner turns into volumes."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name},
        "provisioner": DRIVER_NAME,
        "volumeBindingMode": binding,
        "reclaimPolicy": reclaim,
        "allowVolumeExpansion": expandable,
        **({"parameters": {"fsType": fs_type}} if fs_type else {}),
    }
