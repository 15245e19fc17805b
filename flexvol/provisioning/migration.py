"""`flexvol migrate-pv`, the decisions: is a FlexVolume PersistentVolume safe to turn into a CSI
one, and what is the CSI PersistentVolume for the same volume. Pure: API objects in, a `Plan`
or a `MigrationRefused` out; migrator.py carries the plan out.

Why the claim survives (Kubernetes pkg/controller/volume/persistentvolume, pv_controller.go):
a claim with the `pv.kubernetes.io/bind-completed` annotation is synced by syncBoundClaim,
whatever its phase. While the PV its `spec.volumeName` names is missing, or names another claim
UID, it is marked `Lost`; once a PV of that name has `claimRef.uid` equal to the claim's UID,
the same function binds it again and the claim is `Bound`. A claim's `volumeName` cannot be
changed once set, so the new PV keeps the old one's name.

Why the old PV's claimRef UID is changed before it is deleted (pkg/controller/volume/
pvprotection): the `kubernetes.io/pv-protection` finalizer is removed only once the PV's
phase is not `Bound`, and a PV whose claimRef UID matches its claim stays `Bound`. Another UID
makes the PV controller mark it `Released` (policy Retain: nothing is deleted) and the claim
`Lost`; the finalizer then goes and the delete completes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from flexvol.core.config import DRIVER_NAME as FLEX_DRIVER
from flexvol.core.errors import Refused
from flexvol.csi.names import DRIVER_NAME as CSI_DRIVER
from flexvol.csi.names import TOPOLOGY_KEY
from flexvol.provisioning import claims, names

# Set on the old PV's claimRef while it is let go of (any UID no claim has would do).
RELEASE_UID = "flexvol-migrating-to-csi"
# On the new PV: where it came from, for people and for a rerun.
MIGRATED_ANNOTATION = "flexvol.io/migrated-from"
FS_TYPE_ATTRIBUTE = "fsType"  # the volume context CreateVolume returns (csi/controller.py)
# A pod in these phases holds no volume.
DONE_PHASES = ("Succeeded", "Failed")
# PV spec keys that are not the volume source (to name the source of a PV that is not ours).
SPEC_KEYS = ("accessModes", "capacity", "claimRef", "mountOptions", "nodeAffinity",
             "persistentVolumeReclaimPolicy", "storageClassName", "volumeMode")


class MigrationRefused(Refused):
    """The PV cannot be migrated (now); the message says why, the hint what to do."""


@dataclass
class Plan:
    """Everything the new PV needs, recorded before the old one is touched."""

    pv_name: str
    old_uid: str
    volume_id: str
    node: str
    topology: str  # the node's topology.flexvol.io/node label: the CSI plugin's node id
    claim_namespace: str
    claim_name: str
    claim_uid: str
    reclaim_policy: str
    capacity: str
    fs_type: str
    access_modes: list[str] = field(default_factory=list)
    storage_class: str = ""
    volume_mode: str = "Filesystem"
    mount_options: list[str] = field(default_factory=list)
    schema: int = 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Plan:
        known = {key: data[key] for key in cls.__dataclass_fields__ if key in data}
        return cls(**known)

    @property
    def claim_key(self) -> str:
        return f"{self.claim_namespace}/{self.claim_name}"


def _meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def is_flexvol_pv(pv: dict) -> bool:
    flex = (pv.get("spec") or {}).get("flexVolume") or {}
    return flex.get("driver") == FLEX_DRIVER


def is_migrated_pv(pv: dict, volume_id: str = "") -> bool:
    """A CSI PV of flexvol's plugin (for `volume_id`, when given)."""
    csi = (pv.get("spec") or {}).get("csi") or {}
    return csi.get("driver") == CSI_DRIVER and (not volume_id or csi.get("volumeHandle") == volume_id)


def node_of(pv: dict, nodes: list[dict]) -> str:
    """The node whose pool holds the volume: the provisioner's annotation, else the node whose
    hostname label the PV's node affinity names."""
    annotated = claims.node_of_pv(pv)
    if annotated:
        return annotated
    terms = ((((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required") or {})
             .get("nodeSelectorTerms") or [])
    hostnames = {value for term in terms for expression in term.get("matchExpressions") or []
                 if expression.get("key") == names.HOSTNAME_LABEL and expression.get("operator") == "In"
                 for value in expression.get("values") or []}
    found = [_meta(node).get("name", "") for node in nodes
             if (_meta(node).get("labels") or {}).get(names.HOSTNAME_LABEL) in hostnames]
    name = _meta(pv).get("name", "")
    if len(hostnames) != 1 or len(found) != 1:
        raise MigrationRefused(
            f"cannot tell which node holds PersistentVolume {name}'s volume: it has no "
            f"{names.NODE_ANNOTATION} annotation and its node affinity names "
            f"{len(hostnames)} hostname(s) matching {len(found)} node(s)",
            f"annotate it with {names.NODE_ANNOTATION}=<node> (kubectl annotate pv {name} ...)")
    return found[0]


def pods_using(claim_name: str, pods: list[dict]) -> list[str]:
    """Pods that name the claim and have not finished (a pending pod will mount it soon)."""
    using = []
    for pod in pods:
        if (pod.get("status") or {}).get("phase") in DONE_PHASES:
            continue
        for volume in (pod.get("spec") or {}).get("volumes") or []:
            if (volume.get("persistentVolumeClaim") or {}).get("claimName") == claim_name:
                using.append(_meta(pod).get("name", "?"))
                break
    return using


def check_claim(pv: dict, claim: dict | None, *, started: bool) -> None:
    """The claim must be Bound to this PV (a migration already started may have made it Lost,
    which it recovers from: module docstring)."""
    name = _meta(pv).get("name", "")
    ref = (pv.get("spec") or {}).get("claimRef") or {}
    if not ref:
        raise MigrationRefused(f"PersistentVolume {name} is not bound to a claim",
                               "only a bound PV is migrated; an unbound one can be recreated as CSI")
    key = f"{ref.get('namespace') or '?'}/{ref.get('name') or '?'}"
    if claim is None:
        raise MigrationRefused(f"claim {key} of PersistentVolume {name} does not exist")
    phase = (claim.get("status") or {}).get("phase", "")
    same = (claim.get("spec") or {}).get("volumeName") == name
    if not same or (phase != "Bound" and not (started and phase == "Lost")):
        raise MigrationRefused(f"claim {key} is not bound to PersistentVolume {name} (phase "
                               f"{phase or 'unknown'}, volumeName "
                               f"{(claim.get('spec') or {}).get('volumeName') or 'none'})",
                               "wait until the claim is Bound, then run this again")
    if not started and ref.get("uid") != _meta(claim).get("uid"):
        raise MigrationRefused(f"PersistentVolume {name}'s claimRef names UID {ref.get('uid')}, "
                               f"but claim {key} has UID {_meta(claim).get('uid')}")


def check_node_idle(pv_name: str, node: dict) -> None:
    """The kubelet (or the attach/detach controller) must have let go of the volume."""
    from flexvol.provisioning.reclaim import in_use_on_node

    where = in_use_on_node(pv_name, node)
    if where:
        raise MigrationRefused(f"node {_meta(node).get('name')} still lists PersistentVolume "
                               f"{pv_name} in {where}",
                               "wait until the kubelet has unmounted and detached it")


def topology_of(node: dict) -> str:
    """The CSI plugin's node id, from the label the kubelet sets when the plugin registers."""
    value = (_meta(node).get("labels") or {}).get(TOPOLOGY_KEY, "")
    if not value:
        raise MigrationRefused(
            f"node {_meta(node).get('name')} has no {TOPOLOGY_KEY} label: the CSI plugin "
            f"{CSI_DRIVER} is not registered there, so no pod could use the CSI volume",
            "deploy the plugin (deploy/csi/) on that node first")
    return value


def make_plan(pv: dict, claim: dict, node: str, topology: str, fs_type: str) -> Plan:
    spec = pv.get("spec") or {}
    flex = spec.get("flexVolume") or {}
    options = flex.get("options") or {}
    mount_options = [item.strip() for item in str(options.get("mountOptions", "")).split(",")
                     if item.strip()]
    return Plan(
        pv_name=_meta(pv)["name"], old_uid=_meta(pv).get("uid", ""),
        volume_id=claims.volume_id_of_pv(pv) or "", node=node, topology=topology,
        claim_namespace=_meta(claim)["namespace"], claim_name=_meta(claim)["name"],
        claim_uid=_meta(claim)["uid"],
        reclaim_policy=spec.get("persistentVolumeReclaimPolicy") or "Delete",
        capacity=(spec.get("capacity") or {}).get("storage", ""),
        fs_type=fs_type, access_modes=list(spec.get("accessModes") or []),
        storage_class=spec.get("storageClassName") or "",
        volume_mode=spec.get("volumeMode") or "Filesystem",
        mount_options=list(spec.get("mountOptions") or mount_options))


def released(pv: dict) -> dict:
    """The old PV with policy Retain and a claimRef UID no claim has (module docstring)."""
    body = {key: value for key, value in pv.items() if key != "status"}
    spec = body["spec"] = dict(pv["spec"])
    spec["persistentVolumeReclaimPolicy"] = "Retain"
    spec["claimRef"] = {**(spec.get("claimRef") or {}), "uid": RELEASE_UID}
    spec["claimRef"].pop("resourceVersion", None)
    return body


def is_released(pv: dict) -> bool:
    spec = pv.get("spec") or {}
    return (spec.get("persistentVolumeReclaimPolicy") == "Retain"
            and (spec.get("claimRef") or {}).get("uid") == RELEASE_UID)


def csi_pv(plan: Plan) -> dict:
    """The CSI PersistentVolume for the same volume, pre-bound to the same claim (UID
    included), pinned to the volume's node by the plugin's topology key."""
    spec: dict = {
        "capacity": {"storage": plan.capacity},
        "accessModes": list(plan.access_modes),
        "persistentVolumeReclaimPolicy": plan.reclaim_policy,
        "volumeMode": plan.volume_mode,
        "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                     "namespace": plan.claim_namespace, "name": plan.claim_name,
                     "uid": plan.claim_uid},
        "csi": {"driver": CSI_DRIVER, "volumeHandle": plan.volume_id, "fsType": plan.fs_type,
                "volumeAttributes": {FS_TYPE_ATTRIBUTE: plan.fs_type}},
        "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": TOPOLOGY_KEY, "operator": "In", "values": [plan.topology]}]}]}},
    }
    if plan.storage_class:
        spec["storageClassName"] = plan.storage_class
    if plan.mount_options:
        spec["mountOptions"] = list(plan.mount_options)
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": plan.pv_name,
            "annotations": {
                # The external-provisioner deletes (DeleteVolume) only PVs it provisioned.
                names.PROVISIONED_BY_ANNOTATION: CSI_DRIVER,
                MIGRATED_ANNOTATION: FLEX_DRIVER,
                names.NODE_ANNOTATION: plan.node,
            },
        },
        "spec": spec,
    }


def steps(plan: Plan) -> list[str]:
    """The plan in words, for --dry-run."""
    return [
        f"record the plan under the data root (migrations/{plan.pv_name}.json)",
        f"set PersistentVolume {plan.pv_name}'s reclaim policy to Retain (was "
        f"{plan.reclaim_policy}) and its claimRef UID to {RELEASE_UID}: the PV goes Released, "
        f"claim {plan.claim_key} goes Lost",
        f"delete PersistentVolume {plan.pv_name} (UID {plan.old_uid}); the volume and its data stay",
        f"mark volume {plan.volume_id} as made through CSI (csi_name, created_by) in its record",
        f"create CSI PersistentVolume {plan.pv_name}: driver {CSI_DRIVER}, volumeHandle "
        f"{plan.volume_id}, fsType {plan.fs_type}, node {plan.node}, policy {plan.reclaim_policy}, "
        f"claimRef {plan.claim_key} (UID {plan.claim_uid})",
        f"wait until claim {plan.claim_key} is Bound again",
    ]
