"""Delete one volume's backing file and records on this node, refusing while it is in use.

Kept apart from the agent so the operator toolkit's delete can take its place: the agent needs
only `delete_volume(config, volume_id) -> bool`.
"""

from __future__ import annotations

import os

from flexvol import kernel, state
from flexvol.config import Config
from flexvol.errors import Refused
from flexvol.options import check_volume_id

LOCK_WAIT_SECONDS = 10.0


def delete_volume(config: Config, volume_id: str) -> bool:
    """Remove the volume's backing file, record and PV-name records.

    Refuses (Refused) while a loop device backs the file, mounted or not: an attached volume
    may be mid-mount under the kubelet. Returns False when there was nothing to delete (a PV
    whose pod never started leaves no file behind).
    """
    check_volume_id(volume_id)
    if not os.path.isdir(config.data_root):
        return False
    state.ensure_dirs(config)
    path = config.backing_file(volume_id)
    # The driver's own lock: no mount of this volume can start while the file goes away.
    with state.VolumeLock(config, volume_id, wait=LOCK_WAIT_SECONDS):
        devices = kernel.loops_of_file(path)
        if devices:
            mounts = kernel.read_mounts()
            targets = [mount.mount_point for device in devices
                       for mount in kernel.mounts_of_device(device, mounts)]
            if targets:
                raise Refused(f"volume {volume_id} is mounted at {', '.join(targets)}; not deleting it",
                              "it is deleted once the kubelet has unmounted it")
            raise Refused(f"volume {volume_id} is still attached as {', '.join(devices)}; "
                          "not deleting it", "it is deleted once the loop device is detached")
        record = state.load_record(config, volume_id) or {}
        removed = state.remove(path, durable=True)
        for pv_name in record.get("pv_names") or ():
            pv_record = state.load_pv(config, pv_name)
            if pv_record is not None and pv_record.get("volume_id") == volume_id:
                state.remove(state.pv_path(config, pv_name))
        removed = state.remove(config.record_path(volume_id), durable=True) or removed
    return removed
