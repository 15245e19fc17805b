"""What the node agent does with a PersistentVolume: the reclaim decision, pure.

Only PVs this provisioner made for this node are touched. Kubernetes marks a PV Released when
its claim is deleted, and a claim is deleted only once no pod uses it; in attach mode the node
may still list the volume as attached or in use for a while, so that is checked too.
"""

from __future__ import annotations

from dataclasses import dataclass

from flexvol.core.errors import InvalidInput
from flexvol.core.options import check_volume_id
from flexvol.provisioning import claims

IGNORE = "ignore"   # not ours, or not Released
KEEP = "keep"       # Released, but its policy keeps it: say so once
WAIT = "wait"       # to be deleted once the node lets go of it
DELETE = "delete"   # delete the backing volume, then the PV


@dataclass(frozen=True)
class ReclaimDecision:
    action: str
    message: str = ""
    volume_id: str = ""


def in_use_on_node(pv_name: str, node: dict | None) -> str | None:
    """Where the node's status still lists the PV, or None.

    Unique names of FlexVolume volumes end in "/<pv name>" (plugin name, then the volume name,
    docs/flexvolume.md section 5), in volumesInUse and volumesAttached alike.
    """
    status = (node or {}).get("status") or {}
    suffix = "/" + pv_name
    if any(str(name).endswith(suffix) for name in status.get("volumesInUse") or ()):
        return "volumesInUse"
    if any(str(entry.get("name", "")).endswith(suffix) for entry in status.get("volumesAttached") or ()):
        return "volumesAttached"
    return None


def decide_reclaim(pv: dict, node_name: str, provisioner: str, node: dict | None) -> ReclaimDecision:
    name = pv.get("metadata", {}).get("name", "")
    if claims.provisioned_by(pv) != provisioner or claims.node_of_pv(pv) != node_name:
        return ReclaimDecision(IGNORE)
    if (pv.get("status") or {}).get("phase") != "Released":
        return ReclaimDecision(IGNORE)
    policy = (pv.get("spec") or {}).get("persistentVolumeReclaimPolicy", "Delete")
    if policy != "Delete":
        return ReclaimDecision(KEEP, f"PersistentVolume {name} is Released with policy {policy}: "
                                     "its volume and data are kept; delete the PV by hand when "
                                     "the data is no longer needed")
    try:
        volume_id = check_volume_id(claims.volume_id_of_pv(pv))
    except InvalidInput as error:
        return ReclaimDecision(KEEP, f"PersistentVolume {name} is not reclaimed: {error}")
    where = in_use_on_node(name, node)
    if where:
        return ReclaimDecision(WAIT, f"PersistentVolume {name} is Released but node {node_name} "
                                     f"still lists it in {where}", volume_id)
    return ReclaimDecision(DELETE, f"deleting volume {volume_id} of Released PersistentVolume "
                                   f"{name} (policy Delete)", volume_id)
