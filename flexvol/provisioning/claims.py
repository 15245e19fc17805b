"""Which claims the provisioner acts on, and the PersistentVolume it builds for one.

Pure functions over API objects as plain dicts (the JSON the API server serves), so they are
tested against recorded objects and know nothing of the client library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flexvol.core import options as option_keys
from flexvol.core.errors import InvalidInput
from flexvol.core.filesystems import DEFAULT_FS_TYPE
from flexvol.core.options import (
    ALLOCATION,
    ALLOCATIONS,
    MOUNT_OPTIONS,
    SIZE,
    VOLUME_ID,
    check_mount_options,
    parse_spec,
)
from flexvol.provisioning import names

if TYPE_CHECKING:
    from flexvol.provisioning.sources import DataSource

IGNORE = "ignore"        # not ours, or nothing left to do: no event
WAIT = "wait"            # ours, but Kubernetes has a step to take first
REFUSE = "refuse"        # ours, and cannot be provisioned as asked: an event says why
PROVISION = "provision"  # ours and valid: place it and create the PV

WAIT_FOR_FIRST_CONSUMER = "WaitForFirstConsumer"
CLASS_PARAMETERS = ("fsType", ALLOCATION)


@dataclass(frozen=True)
class VolumeRequest:
    """What a valid claim asks of flexvol, resolved against its StorageClass."""

    pv_name: str
    volume_id: str
    size: str             # the claim's request as written, e.g. "10Gi"
    size_bytes: int       # what the driver will make of it (rounded up to whole pages)
    fs_type: str
    mount_options: tuple[str, ...]
    access_modes: tuple[str, ...]
    reclaim_policy: str
    class_name: str
    # the class's `allocation` parameter as written ("" when it names none: the driver's default)
    allocation: str = ""
    # the claim's dataSource (sources.py): the volume is a copy of it, made on its node
    data_source: DataSource | None = None
    # the class's fsType as written ("" when it names none: a copy keeps its source's)
    class_fs_type: str = ""


@dataclass(frozen=True)
class ClaimDecision:
    action: str
    message: str = ""
    reason: str = ""                     # the event reason, CamelCase as Kubernetes writes them
    request: VolumeRequest | None = None
    selected_node: str | None = None     # WaitForFirstConsumer: the scheduler's choice


def pv_name_for(claim: dict) -> str:
    """One name per claim, so a second attempt (or a restarted provisioner) finds the first."""
    return "pvc-" + claim["metadata"]["uid"]


def claim_key(claim: dict) -> str:
    meta = claim.get("metadata", {})
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def claim_class_name(claim: dict) -> str:
    annotations = claim.get("metadata", {}).get("annotations") or {}
    return (claim.get("spec", {}).get("storageClassName")
            or annotations.get(names.STORAGE_CLASS_ANNOTATION) or "")


def storage_provisioner_of(claim: dict) -> str | None:
    """The provisioner Kubernetes handed the claim to, under either annotation name."""
    annotations = claim.get("metadata", {}).get("annotations") or {}
    for key in names.STORAGE_PROVISIONER_ANNOTATIONS:
        if annotations.get(key):
            return annotations[key]
    return None


def decide_claim(claim: dict, storage_class: dict | None, provisioner: str,
                 existing_pvs: frozenset[str] | set[str] = frozenset()) -> ClaimDecision:
    """What to do with one claim; `existing_pvs` are the names of PVs that exist now."""
    meta = claim.get("metadata", {})
    spec = claim.get("spec", {})
    if meta.get("deletionTimestamp"):
        return ClaimDecision(IGNORE, "the claim is being deleted")
    if spec.get("volumeName"):
        return ClaimDecision(IGNORE, f"the claim is bound to {spec['volumeName']}")
    class_name = claim_class_name(claim)
    handed_to = storage_provisioner_of(claim)
    if not class_name:
        return ClaimDecision(IGNORE, "the claim names no StorageClass")
    if storage_class is None:
        if handed_to == provisioner:
            return ClaimDecision(REFUSE, f"StorageClass {class_name} does not exist",
                                 "ProvisioningFailed")
        return ClaimDecision(IGNORE, f"StorageClass {class_name} is unknown")
    if storage_class.get("provisioner") != provisioner:
        return ClaimDecision(IGNORE, f"StorageClass {class_name} belongs to "
                                     f"{storage_class.get('provisioner')}")
    if handed_to is None:
        # The controller-manager adds the annotation once the claim is ready to provision
        # (under WaitForFirstConsumer: after the scheduler picked a node).
        return ClaimDecision(WAIT, "waiting for Kubernetes to hand the claim to " + provisioner)
    if handed_to != provisioner:
        return ClaimDecision(IGNORE, f"the claim was handed to {handed_to}")
    pv_name = pv_name_for(claim)
    if pv_name in existing_pvs:
        return ClaimDecision(IGNORE, f"PersistentVolume {pv_name} exists already")
    try:
        request = volume_request(claim, storage_class)
    except InvalidInput as error:
        return ClaimDecision(REFUSE, str(error), "ProvisioningFailed")
    if storage_class.get("volumeBindingMode") == WAIT_FOR_FIRST_CONSUMER:
        node = (meta.get("annotations") or {}).get(names.SELECTED_NODE_ANNOTATION)
        if not node:
            return ClaimDecision(WAIT, "waiting for the scheduler to choose a node for a pod "
                                       "that uses the claim", request=request)
        return ClaimDecision(PROVISION, request=request, selected_node=node)
    return ClaimDecision(PROVISION, request=request)


def volume_request(claim: dict, storage_class: dict) -> VolumeRequest:
    """Validate the claim against what a node-local loop device can be; InvalidInput if not."""
    spec = claim.get("spec", {})
    key = claim_key(claim)
    modes = tuple(spec.get("accessModes") or ())
    if not modes:
        raise InvalidInput(f"claim {key} names no access mode", "set accessModes: [ReadWriteOnce]")
    shared = [mode for mode in modes if mode in names.ANY_WRITER_MODES]
    if shared:
        raise InvalidInput(
            f"claim {key} asks for {', '.join(shared)}, but a flexvol volume is one node's loop "
            "device and cannot be used from several nodes", "use ReadWriteOnce")
    if spec.get("volumeMode", "Filesystem") != "Filesystem":
        raise InvalidInput(f"claim {key} asks for volumeMode {spec['volumeMode']}; flexvol "
                           "provides filesystems only", "use volumeMode: Filesystem")
    if spec.get("selector"):
        raise InvalidInput(f"claim {key} has a selector; dynamically provisioned volumes "
                           "cannot match one", "remove spec.selector")
    from flexvol.provisioning import sources

    data_source = sources.requested(claim)
    size = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "")
    if not size:
        raise InvalidInput(f"claim {key} requests no storage", "set resources.requests.storage")
    parameters = storage_class.get("parameters") or {}
    unknown = sorted(set(parameters) - set(CLASS_PARAMETERS))
    class_name = storage_class["metadata"]["name"]
    if unknown:
        raise InvalidInput(f"StorageClass {class_name} has unknown parameters: {', '.join(unknown)}",
                           f"flexvol reads only: {', '.join(CLASS_PARAMETERS)}")
    fs_type = parameters.get("fsType") or DEFAULT_FS_TYPE
    allocation = parameters.get(ALLOCATION) or ""
    if allocation not in ("", *ALLOCATIONS):
        raise InvalidInput(f"StorageClass {class_name} has allocation {allocation[:40]!r}",
                           "set parameters.allocation to thin or thick, or leave it out (thin)")
    mount_options = check_mount_options(",".join(storage_class.get("mountOptions") or ()))
    pv_name = pv_name_for(claim)
    # The driver's own validation decides: a PV it would refuse at mount time is never made.
    parsed = parse_spec(driver_options(pv_name, size, mount_options, allocation)
                        | {option_keys.FS_TYPE: fs_type})
    return VolumeRequest(
        pv_name=pv_name,
        volume_id=parsed.volume_id,
        size=size,
        size_bytes=parsed.size_bytes,
        fs_type=fs_type,
        mount_options=mount_options,
        access_modes=modes,
        reclaim_policy=storage_class.get("reclaimPolicy") or "Delete",
        class_name=class_name,
        allocation=allocation,
        data_source=data_source,
        class_fs_type=parameters.get("fsType") or "",
    )


def driver_options(volume_id: str, size: str, mount_options: tuple[str, ...],
                   allocation: str = "") -> dict[str, str]:
    """flexVolume.options; fsType travels as flexVolume.fsType (sent as kubernetes.io/fsType)."""
    options = {VOLUME_ID: volume_id, SIZE: size}
    if allocation:
        # the volume is made thin or thick at its first mount on the node (backing.ensure_file)
        options[ALLOCATION] = allocation
    if mount_options:
        # PV spec.mountOptions are refused for flexVolume (docs/flexvolume.md section 4): options carry them.
        options[MOUNT_OPTIONS] = ",".join(mount_options)
    return options


def build_pv(request: VolumeRequest, claim: dict, node: str, hostname: str,
             provisioner: str, source_options: dict[str, str] | None = None) -> dict:
    """The PersistentVolume for `claim`, pinned to the node whose hostname label is `hostname`;
    `source_options` name the snapshot or volume its volume is copied from (sources.py)."""
    meta = claim["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": request.pv_name,
            "annotations": {
                names.PROVISIONED_BY_ANNOTATION: provisioner,
                names.NODE_ANNOTATION: node,
            },
        },
        "spec": {
            "capacity": {"storage": request.size},
            "accessModes": list(request.access_modes),
            "persistentVolumeReclaimPolicy": request.reclaim_policy,
            "storageClassName": request.class_name,
            "volumeMode": "Filesystem",
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
            "flexVolume": {
                "driver": provisioner,
                "fsType": request.fs_type,
                "options": driver_options(request.volume_id, request.size,
                                          request.mount_options, request.allocation)
                | (source_options or {}),
            },
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": names.HOSTNAME_LABEL, "operator": "In", "values": [hostname]},
            ]}]}},
        },
    }


def node_of_pv(pv: dict) -> str | None:
    return ((pv.get("metadata") or {}).get("annotations") or {}).get(names.NODE_ANNOTATION)


def provisioned_by(pv: dict) -> str | None:
    return ((pv.get("metadata") or {}).get("annotations") or {}).get(names.PROVISIONED_BY_ANNOTATION)


def volume_id_of_pv(pv: dict) -> str | None:
    flex = (pv.get("spec") or {}).get("flexVolume") or {}
    return (flex.get("options") or {}).get(VOLUME_ID)
