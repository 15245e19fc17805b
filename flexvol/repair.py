"""Leftovers that do not add up, each with the action that would fix it, and the actions.

`findings()` only reads. `apply()` takes the volume's lock, checks that the finding still holds
and acts with the driver's own steps. Nothing here deletes a backing file: a loop device of a
deleted file is copied back to a file before it is detached.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from flexvol import kernel, state, volume
from flexvol.config import Config
from flexvol.errors import FlexvolError, ProbeFailed, Refused
from flexvol.inventory import (
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
    return found


def _awaiting_first_mount(config: Config, volume_id: str) -> bool:
    try:
        return awaiting_first_mount(state.load_record(config, volume_id))
    except FlexvolError:
        return False


def _recorded(config: Config, mount_dir: str, volume_id: str) -> bool:
    target = state.load_target(config, mount_dir)
    return target is not None and target.get("volume_id") == volume_id


def _target_findings(config: Config, snapshot: Snapshot, kubelet_root: str) -> list[Finding]:
    found = []
    mounted = {mount.mount_point for mount in snapshot.mounts}
    seen = set()
    for directory in pod_volume_dirs(kubelet_root):
        seen.add(directory)
        if directory in mounted:
            continue
        target = state.load_target(config, directory)
        volume_id = target["volume_id"] if target else ""
        if _has_entries(directory):
            found.append(Finding(POD_DIR_UNMOUNTED, volume_id, directory,
                                 f"{directory} lost its mount and holds files the pod wrote to the root "
                                 "disk; move them aside, then run repair again", ""))
        elif target is None:
            found.append(Finding(POD_DIR_UNMOUNTED, "", directory,
                                 f"{directory} lost its mount and no record says which volume it had; "
                                 "delete the pod so the kubelet mounts it again", ""))
        else:
            found.append(Finding(POD_DIR_UNMOUNTED, volume_id, directory,
                                 f"{directory} lost its mount (a reboot?): the pod would write to the "
                                 "root disk",
                                 f"mount volume {volume_id} there again"))
    for name in _target_files(config):
        target = state.read_json(os.path.join(config.targets_dir, name))
        path = (target or {}).get("path", "")
        if not path or path in seen or path in mounted or os.path.exists(path):
            continue
        found.append(Finding(STALE_TARGET, target.get("volume_id", ""), path,
                             f"the driver remembers a mount at {path}, which no longer exists",
                             "forget it"))
    return found


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


def _target_files(config: Config) -> list[str]:
    try:
        return sorted(name for name in os.listdir(config.targets_dir) if name.endswith(".json"))
    except OSError:
        return []


def _has_entries(directory: str) -> bool:
    try:
        return bool(os.listdir(directory))
    except OSError:
        return False


def _recovery_path(config: Config, volume_id: str, device: str) -> str:
    path = config.backing_file(volume_id)
    if not os.path.exists(path):
        return path
    return config.backing_file(f"{volume_id}-recovered-{os.path.basename(device)}")


# ---- actions -------------------------------------------------------------------------------

def apply(config: Config, finding: Finding) -> str:
    """Carry out the finding's action under the volume's lock; return what was done."""
    if not finding.action:
        raise Refused(f"{finding.subject}: nothing to apply", finding.detail)
    if finding.kind == POD_DIR_UNMOUNTED:
        return _remount(config, finding)
    if finding.kind == STALE_TARGET and not finding.volume_id:
        state.remove_target(config, finding.subject)
        return f"forgot {finding.subject}"
    state.ensure_dirs(config)
    with state.VolumeLock(config, finding.volume_id, wait=10):
        return ACTIONS[finding.kind](config, finding)


def _detach_leaked(config: Config, finding: Finding) -> str:
    if kernel.mounts_of_device(finding.subject):
        raise Refused(f"{finding.subject} is mounted now; left alone")
    detached = volume.release_loop(config, finding.volume_id)
    return f"detached {', '.join(detached)}" if detached else "already detached"


def _recover_deleted(config: Config, finding: Finding) -> str:
    device = finding.subject
    backing = kernel.loop_backing_file(device) or ""
    if not backing.endswith(kernel.DELETED_SUFFIX) or kernel.mounts_of_device(device):
        raise Refused(f"{device} changed since it was inspected; run repair again")
    destination = _recovery_path(config, finding.volume_id, device)
    copy_sparse(device, destination)
    volume.detach_loop(device)
    return f"copied {device} to {destination} and detached it"


def copy_sparse(device: str, destination: str) -> None:
    """Copy a block device to a new file, leaving all-zero chunks as holes."""
    temporary = destination + ".partial"
    source_fd = os.open(device, os.O_RDONLY)
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            size = 0
            zero = bytes(COPY_CHUNK)
            while chunk := os.read(source_fd, COPY_CHUNK):
                if chunk != zero[:len(chunk)]:
                    os.pwrite(fd, chunk, size)
                size += len(chunk)
            os.ftruncate(fd, size)
            os.fsync(fd)
        finally:
            os.close(fd)
    finally:
        os.close(source_fd)
    os.rename(temporary, destination)


def _unmount_stale(config: Config, finding: Finding) -> str:
    target = state.load_target(config, finding.subject)
    if target is not None and target.get("volume_id") == finding.volume_id:
        raise Refused(f"{finding.subject} is known to the driver now; left alone")
    volume.release_mount(finding.subject)
    detached = volume.release_loop(config, finding.volume_id)
    return f"unmounted {finding.subject}" + (f", detached {', '.join(detached)}" if detached else "")


def _forget_record(config: Config, finding: Finding) -> str:
    if os.path.exists(config.backing_file(finding.volume_id)):
        raise Refused(f"the backing file of {finding.volume_id} exists now; record kept")
    state.remove(config.record_path(finding.volume_id), durable=True)
    return f"forgot the record of {finding.volume_id}"


def _adopt_file(config: Config, finding: Finding) -> str:
    if state.load_record(config, finding.volume_id) is not None:
        return "already has a record"
    path = config.backing_file(finding.volume_id)
    try:
        found = kernel.probe(path)
    except ProbeFailed as error:
        raise Refused(f"{path} was not adopted: {error.message}", error.hint) from None
    record = state.new_record(finding.volume_id, os.stat(path).st_size, found.fs_type or "ext4")
    record["adopted"] = True
    if found.fs_type:
        # the same memory ensure_filesystem keeps: formatted once, never again
        volume._remember_formatted(config, record, found)
    else:
        state.save_record(config, record)
    return f"adopted {path} ({found.fs_type or 'no filesystem'})"


def _forget_target(config: Config, finding: Finding) -> str:
    if os.path.exists(finding.subject):
        raise Refused(f"{finding.subject} exists now; left alone")
    state.remove_target(config, finding.subject)
    return f"forgot {finding.subject}"


def _remount(config: Config, finding: Finding) -> str:
    """Mount the volume again with the driver's own mount verb, as the kubelet would."""
    from flexvol import protocol, verbs, wirejson
    from flexvol.journal import CallInfo

    record = state.load_record(config, finding.volume_id)
    if record is None:
        raise Refused(f"volume {finding.volume_id} has no record; not mounted again")
    if _has_entries(finding.subject):
        raise Refused(f"{finding.subject} holds files now; move them aside first")
    fs_type = (record.get("formatted") or {}).get("fs_type") or record.get("fs_type", "")
    options = wirejson.dumps({"volumeID": finding.volume_id, protocol.FS_TYPE: fs_type,
                              protocol.READ_WRITE: "rw"})
    reply = verbs.dispatch(config, ["mount", finding.subject, options], CallInfo("mount"))
    if reply.status != protocol.SUCCESS:
        raise FlexvolError(f"mount of {finding.volume_id} at {finding.subject} failed: {reply.message}")
    return f"mounted {finding.volume_id} at {finding.subject}"


ACTIONS = {
    LEAKED_LOOP: _detach_leaked,
    DELETED_FILE_LOOP: _recover_deleted,
    STALE_MOUNT: _unmount_stale,
    RECORD_WITHOUT_FILE: _forget_record,
    FILE_WITHOUT_RECORD: _adopt_file,
    STALE_TARGET: _forget_target,
}
