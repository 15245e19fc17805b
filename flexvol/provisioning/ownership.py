"""Which PersistentVolume a provisioned volume belongs to, and the check every deletion makes.

A PV is only an API object: whoever may create PVs can write one that names any volumeID, our
provisioner annotation, this node and policy Delete. Trusting such a copy once it is Released
would destroy the volume it names. So the node agent writes into the volume's record on its
node the PV the provisioner made for it (name and UID, the claim and its namespace) as soon
as it sees that PV bound or available, and a volume is deleted only for the PV whose UID is
recorded there. The record is written before the first mount when the agent is quicker than
the kubelet (a record without a file yet; the driver's first mount creates the file), so the
driver also learns the owning namespace before any pod mounts the volume.
"""

from __future__ import annotations

import os

from flexvol.core import state
from flexvol.core.config import Config
from flexvol.core.errors import FlexvolError, InvalidInput
from flexvol.core.options import check_volume_id
from flexvol.provisioning import claims, placement

# Fields of the volume record (state.py) written for provisioned volumes.
PV_NAME = "pv_name"
PV_UID = "pv_uid"
NAMESPACE = "namespace"     # the claim's namespace: the only one whose pods may mount it
CLAIM = "claim"             # "namespace/name"
OWNER_FIELDS = (PV_NAME, PV_UID, NAMESPACE, CLAIM)


def not_made_by(pv: dict, provisioner: str) -> str | None:
    """Why `pv` is not a PV `provisioner` made, or None. The provisioner names the PV and its
    volume after the claim's UID (claims.pv_name_for) and sets its own name as annotation and
    driver: a PV that differs in any of these was written by someone else."""
    meta = pv.get("metadata") or {}
    spec = pv.get("spec") or {}
    name = meta.get("name", "")
    if claims.provisioned_by(pv) != provisioner:
        return f"PersistentVolume {name} was not provisioned by {provisioner}"
    driver = (spec.get("flexVolume") or {}).get("driver")
    if driver != provisioner:
        return f"PersistentVolume {name} uses driver {driver!r}, not {provisioner}"
    volume_id = claims.volume_id_of_pv(pv)
    claim_uid = (spec.get("claimRef") or {}).get("uid", "")
    if not claim_uid or volume_id != name or name != "pvc-" + claim_uid:
        return (f"PersistentVolume {name} names volume {volume_id!r} and claim UID {claim_uid!r}; "
                f"{provisioner} names a PV and its volume after the claim's UID")
    if not meta.get("uid"):
        return f"PersistentVolume {name} has no UID"
    return None


def owner_fields(pv: dict) -> dict[str, str]:
    ref = pv["spec"]["claimRef"]
    return {PV_NAME: pv["metadata"]["name"], PV_UID: pv["metadata"]["uid"],
            NAMESPACE: ref.get("namespace", ""), CLAIM: f"{ref.get('namespace', '')}/{ref.get('name', '')}"}


def should_record(pv: dict, node_name: str, provisioner: str) -> bool:
    """A PV of ours on this node that is not (yet) Released: the moment to record its owner.
    Released PVs are never trusted at first sight; they only meet the record."""
    if claims.node_of_pv(pv) != node_name or (pv.get("metadata") or {}).get("deletionTimestamp"):
        return False
    if (pv.get("status") or {}).get("phase") not in ("Pending", "Available", "Bound"):
        return False
    return not_made_by(pv, provisioner) is None


def record_owner(config: Config, pv: dict) -> tuple[bool, str | None]:
    """Write the owner of `pv`'s volume into its record, under the volume's lock, making the
    record when the volume has none yet. Returns (written, problem): the problem says why the
    volume is not recorded as this PV's (another PV's UID is recorded, or a file without a
    record lies there). Call only for PVs should_record accepts."""
    volume_id = check_volume_id(claims.volume_id_of_pv(pv))
    fields = owner_fields(pv)
    known = state.load_record(config, volume_id) if os.path.isdir(config.records_dir) else None
    if known is not None and all(getattr(known, key) == value for key, value in fields.items()):
        return False, None  # recorded already: no lock taken at every look
    state.ensure_dirs(config)
    with state.VolumeLock(config, volume_id, wait=10):
        record = state.load_record(config, volume_id)
        if record is None:
            if os.path.exists(config.backing_file(volume_id)):
                # The driver adopts such a file at its next mount; its record is written then.
                return False, (f"volume {volume_id} has a backing file but no record; its owner is "
                               "recorded once the driver has adopted it")
            flex = (pv.get("spec") or {}).get("flexVolume") or {}
            record = state.new_record(volume_id, placement.pv_bytes(pv), flex.get("fsType") or "ext4")
        elif record.pv_uid and record.pv_uid != fields[PV_UID]:
            return False, (f"volume {volume_id} belongs to PersistentVolume {record.pv_name} "
                           f"(UID {record.pv_uid}), not to {fields[PV_NAME]} (UID {fields[PV_UID]})")
        elif all(getattr(record, key) == value for key, value in fields.items()):
            return False, None
        for key, value in fields.items():
            setattr(record, key, value)
        state.save_record(config, record)
        return True, None


def reclaim_problem(config: Config, pv: dict, provisioner: str) -> str | None:
    """Why the volume of the Released `pv` must not be deleted for it, or None: the PV must be
    one the provisioner made, and its UID the one recorded in the volume's record. A volume
    with neither record nor file has nothing to lose."""
    problem = not_made_by(pv, provisioner)
    if problem:
        return problem
    name, uid = pv["metadata"]["name"], pv["metadata"]["uid"]
    try:
        volume_id = check_volume_id(claims.volume_id_of_pv(pv))
        record = state.load_record(config, volume_id)
    except (InvalidInput, FlexvolError) as error:
        return str(error)
    if record is None:
        if os.path.exists(config.backing_file(volume_id)):
            return (f"volume {volume_id} has a backing file but no record naming PersistentVolume "
                    f"{name} as its owner")
        return None
    recorded = record.pv_uid
    if recorded == uid:
        return None
    if not recorded:
        return (f"the record of volume {volume_id} names no PersistentVolume as its owner (it was "
                "not seen provisioned); if it is no longer needed, delete it with "
                f"'flexvol delete {volume_id}' on the node and the PV with kubectl")
    return (f"volume {volume_id} belongs to PersistentVolume {record.pv_name} (UID {recorded}), "
            f"not to {name} (UID {uid})")
