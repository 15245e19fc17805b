"""Leftovers that do not add up, each with the action that would fix it.

`findings()` only reads; repair_apply.apply() acts on one finding.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from flexvol.core import backing, guard, kernel, layout, state
from flexvol.core.config import Config
from flexvol.core.errors import FlexvolError
from flexvol.toolkit.inventory import (
    DEFAULT_KUBELET_ROOT,
    POD_VOLUME_DIR,
    Snapshot,
    awaiting_first_mount,
    file_ids,
    known_ids,
    record_ids,
)

COPY_CHUNK = 1 << 20

LEAKED_LOOP = "leaked-loop"
DELETED_FILE_LOOP = "deleted-file-loop"
STALE_MOUNT = "stale-mount"
RECORD_WITHOUT_FILE = "record-without-file"
FILE_WITHOUT_RECORD = "file-without-record"
POD_DIR_UNMOUNTED = "pod-dir-unmounted"
STALE_TARGET = "stale-target"
UNFINISHED_GROWTH = "unfinished-growth"
# how many names a recovered copy may try before repair gives up and asks a person
RECOVERY_NAMES = 100


class Pending(FlexvolError):
    """The action was taken but the kernel has not finished it (a detach of a device someone
    holds open): not done, and said so."""


@dataclass
class Finding:
    kind: str
    volume_id: str
    subject: str  # the loop device, mount point, record or file the finding is about
    detail: str
    # what --apply does; "" when a person must decide (the detail says what to do)
    action: str

    def as_dict(self) -> dict:
        return {"kind": self.kind, "volume_id": self.volume_id, "subject": self.subject,
                "detail": self.detail, "action": self.action}


def findings(config: Config, kubelet_root: str = DEFAULT_KUBELET_ROOT) -> list[Finding]:
    snapshot = Snapshot.take()
    found: list[Finding] = []
    records = set(record_ids(config))
    files = set(file_ids(config))
    for volume_id in known_ids(config, snapshot):
        found.extend(_volume_findings(config, snapshot, volume_id, volume_id in records, volume_id in files))
    found.extend(_target_findings(config, snapshot, kubelet_root))
    from flexvol.toolkit import snapshot_repair  # frozen volumes, half-made snapshots and restores

    found.extend(snapshot_repair.findings(config))
    return found


def _volume_findings(config: Config, snapshot: Snapshot, volume_id: str, has_record: bool,
                     has_file: bool) -> list[Finding]:
    found = []
    path = config.backing_file(volume_id)
    devices = snapshot.loops_of(path)
    for device in devices:
        mounts = snapshot.mounts_of(device)
        if snapshot.loops[device].endswith(kernel.DELETED_SUFFIX):
            if mounts:
                where = ", ".join(mount.mount_point for mount in mounts)
                found.append(Finding(DELETED_FILE_LOOP, volume_id, device,
                                     f"{device} serves a deleted backing file and is mounted at {where}; "
                                     "its data lives only as long as the device: stop the pods using it, "
                                     "then run repair again to save it", ""))
            else:
                found.append(Finding(DELETED_FILE_LOOP, volume_id, device,
                                     f"{device} is attached to the deleted file {path}",
                                     f"copy its data back to {_recovery_path(config, volume_id, device)}, "
                                     f"then detach {device}"))
            continue
        if not mounts:
            found.append(Finding(LEAKED_LOOP, volume_id, device,
                                 f"{device} is attached to {path} but nothing mounts it",
                                 f"detach {device}"))
        known = [mount for mount in mounts if _recorded(config, mount.mount_point, volume_id)]
        for mount in mounts:
            # A mount beside one the driver made is a bind of it (the kubelet's, or an
            # operator's): only a device none of whose mounts the driver knows is stale.
            if not known:
                found.append(Finding(STALE_MOUNT, volume_id, mount.mount_point,
                                     f"{device} is mounted at {mount.mount_point}, which the driver has "
                                     "no record of (the kubelet's unmount would never come)",
                                     f"unmount {mount.mount_point} and free {device}"))
    if has_record and not has_file and not devices and not _awaiting_first_mount(config, volume_id):
        found.append(Finding(RECORD_WITHOUT_FILE, volume_id, config.record_path(volume_id),
                             f"the record of {volume_id} names {path}, which does not exist",
                             "forget the record (it holds no data)"))
    if has_file and not has_record:
        found.append(Finding(FILE_WITHOUT_RECORD, volume_id, path,
                             f"{path} has no record", "adopt it: write a record from what blkid finds"))
    if has_record and has_file:
        found.extend(_growth_findings(config, snapshot, volume_id, devices))
    return found


def _growth_findings(config: Config, snapshot: Snapshot, volume_id: str, devices: list[str]) -> list[Finding]:
    """A volume whose file grew but whose filesystem did not (a failed online grow)."""
    try:
        growing = backing.growth_pending(state.load_record(config, volume_id),
                                        os.stat(config.backing_file(volume_id)).st_size)
    except (FlexvolError, OSError):
        return []
    if not growing:
        return []
    from flexvol.core.quantity import format_bytes

    to = format_bytes(int(growing.get("to") or 0))
    why = f" ({growing['error']})" if growing.get("error") else ""
    path = config.backing_file(volume_id)
    mounted = [mount.mount_point for device in devices for mount in snapshot.mounts_of(device)]
    if mounted:
        return [Finding(UNFINISHED_GROWTH, volume_id, path,
                        f"{volume_id} grew to {to} but its filesystem did not{since(growing)}"
                        f"{why}; it is mounted at {', '.join(mounted)}: stop its pods (the next mount "
                        "grows it offline), or give the node CAP_SYS_RESOURCE and run "
                        f"'flexvol resize {volume_id} {to}'", "")]
    return [Finding(UNFINISHED_GROWTH, volume_id, path,
                    f"{volume_id} grew to {to} but its filesystem did not{since(growing)}{why}",
                    f"grow its filesystem offline to {to}")]


def _awaiting_first_mount(config: Config, volume_id: str) -> bool:
    try:
        return awaiting_first_mount(state.load_record(config, volume_id))
    except FlexvolError:
        return False


def _recorded(config: Config, mount_dir: str, volume_id: str) -> bool:
    target = state.load_target(config, mount_dir)
    return target is not None and target.volume_id == volume_id


def _target_findings(config: Config, snapshot: Snapshot, kubelet_root: str) -> list[Finding]:
    found = []
    mounted = {mount.mount_point for mount in snapshot.mounts}
    seen = set()
    for directory in pod_volume_dirs(kubelet_root):
        seen.add(directory)
        if directory in mounted:
            continue
        target = state.load_target(config, directory)
        volume_id = target.volume_id if target else ""
        if has_entries(directory):
            found.append(Finding(POD_DIR_UNMOUNTED, volume_id, directory,
                                 f"{directory} lost its mount and holds files the pod wrote to the root "
                                 "disk; move them aside, then run repair again", ""))
        elif target is None and not guard.is_guarded(directory):
            # Empty, unguarded and unknown to the driver: what a clean unmount leaves for the
            # kubelet to remove (or a dir it made for a mount to come). Not a finding.
            continue
        elif target is None:
            found.append(Finding(POD_DIR_UNMOUNTED, "", directory,
                                 f"{directory} lost its mount and no record says which volume it had; "
                                 "delete the pod so the kubelet mounts it again", ""))
        elif not target.mode:
            found.append(Finding(POD_DIR_UNMOUNTED, volume_id, directory, mode_unknown(directory), ""))
        else:
            found.append(Finding(POD_DIR_UNMOUNTED, volume_id, directory,
                                 f"{directory} lost its mount (a reboot?): the pod would write to the "
                                 "root disk",
                                 f"mount volume {volume_id} there again ({target.mode})"))
    for _file, target in layout.iter_targets(config):
        path = target.path
        if not path or path in seen or path in mounted or os.path.exists(path):
            continue
        found.append(Finding(STALE_TARGET, target.volume_id, path,
                             f"the driver remembers a mount at {path}, which no longer exists",
                             "forget it"))
    return found


def mode_unknown(directory: str) -> str:
    return (f"{directory} lost its mount and needs a person: the driver's record of it predates "
            "keeping the mount's mode, so it does not say whether the volume was mounted read-only "
            "or read-write, nor with which options, and repair will not guess; delete the pod so "
            "the kubelet mounts it again")


def pod_volume_dirs(kubelet_root: str) -> list[str]:
    """<kubelet root>/pods/<uid>/volumes/flexvol~loop/<name> for every pod."""
    pods = os.path.join(kubelet_root, "pods")
    found = []
    try:
        uids = sorted(os.listdir(pods))
    except OSError:
        return found
    for uid in uids:
        driver_dir = os.path.join(pods, uid, "volumes", POD_VOLUME_DIR)
        try:
            names = sorted(os.listdir(driver_dir))
        except OSError:
            continue
        found.extend(os.path.join(driver_dir, name) for name in names
                     if os.path.isdir(os.path.join(driver_dir, name)))
    return found


def has_entries(directory: str) -> bool:
    try:
        return bool(os.listdir(directory))
    except OSError:
        return False



def since(growing: dict) -> str:
    return f", since {growing['since']}" if growing.get("since") else ""


def recovery_names(volume_id: str, device: str) -> list[str]:
    """Volume ids a recovered copy may take, in order: its own (when its file is gone), then
    <id>-recovered-<loopN>[-2...], each at most the 63 characters a volume id may have."""
    names = [volume_id]
    for number in range(1, RECOVERY_NAMES):
        suffix = f"-recovered-{os.path.basename(device)}" + (f"-{number}" if number > 1 else "")
        names.append(volume_id[: 63 - len(suffix)].rstrip("-._") + suffix)
    return names


def free_name(config: Config, name: str, volume_id: str) -> bool:
    """Neither a file nor (for another volume) a record there: nothing a copy could overwrite or
    be taken for."""
    if os.path.lexists(config.backing_file(name)):
        return False
    return name == volume_id or not os.path.lexists(config.record_path(name))


def _recovery_path(config: Config, volume_id: str, device: str) -> str:
    """Where the copy would go now (apply picks again under the lock, never over a file)."""
    for name in recovery_names(volume_id, device):
        if free_name(config, name, volume_id):
            return config.backing_file(name)
    return "a free name (none found now)"
