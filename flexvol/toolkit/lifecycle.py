"""Operator actions on one volume ahead of, or after, the kubelet's calls: create, delete,
resize. Each takes the volume's lock and uses the core's own steps (backing, loop, formatting) and records
(state.py), so a volume made here is exactly one the driver would have made.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from flexvol.core import backing, formatting, kernel, loop, state
from flexvol.core.config import Config
from flexvol.core.errors import Refused
from flexvol.core.options import VolumeSpec, check_fs_type, check_volume_id, parse_size
from flexvol.core.quantity import format_bytes, human_bytes
from flexvol.core.undo import Undo

CREATED_BY = "flexvol create"

Progress = Callable[[int, int], None]


def _spec(volume_id: str, size: str, fs_type: str, allocation: str = "") -> VolumeSpec:
    from flexvol.core.options import ALLOCATION, parse_spec
    from flexvol.flex import protocol

    # parse_spec: the same checks the driver applies to the kubelet's options (minimum sizes).
    return parse_spec({"volumeID": check_volume_id(volume_id), "size": size,
                       protocol.FS_TYPE: check_fs_type(fs_type), ALLOCATION: allocation})


def create(config: Config, volume_id: str, size: str, fs_type: str = "ext4", *,
           allocation: str = "", progress: Progress | None = None) -> dict:
    """Create and format a new volume, thick (all its blocks reserved) unless `allocation` says
    thin, as the driver makes one (options.DEFAULT_ALLOCATION).

    Formatting happens here, on the still-sparse file, with formatting.ensure_filesystem: the
    record then says formatted-once, and the driver never formats it again. Reserving first
    would give the file blocks, and the driver rightly refuses to format such a file; so the
    blocks are reserved after, by the driver's own step (backing.ensure_reserved).
    """
    spec = _spec(volume_id, size, fs_type, allocation)
    state.ensure_dirs(config)
    with state.VolumeLock(config, spec.volume_id, wait=10):
        path = config.backing_file(spec.volume_id)
        if os.path.exists(path) or state.load_record(config, spec.volume_id) is not None:
            raise Refused(f"volume {spec.volume_id} already exists",
                          "choose another name, or 'flexvol resize' it")
        undo = Undo()
        try:
            record = backing.ensure_file(config, spec, undo, may_create=True)
            record["created_by"] = CREATED_BY
            state.save_record(config, record)
            device = loop.ensure_loop(config, record, undo)
            formatting.ensure_filesystem(config, record, device, spec)
            backing.ensure_reserved(config, record, strict=True, progress=progress)
        except BaseException:
            undo.rollback()
            raise
        finally:
            loop.release_loop(config, spec.volume_id)
        undo.commit()
        return state.load_record(config, spec.volume_id) or record


def wait_detached(devices: list[str], timeout: float = 10) -> None:
    """Wait until loop devices detached by hand (tests, operators) are really gone;
    loop.detach_loop already waits for its own.

    `losetup --detach` of a device that udev's blkid still holds open only marks it
    autoclear; the kernel lets go at the last close, so it lingers for a moment.
    """
    import time

    deadline = time.monotonic() + timeout
    while any(kernel.loop_backing_file(device) for device in devices) and time.monotonic() < deadline:
        time.sleep(0.05)


def in_use(config: Config, volume_id: str) -> list[str]:
    """Why a volume may not be deleted now: its loop devices, mounts and attachments."""
    reasons = []
    path = config.backing_file(volume_id)
    mounts = kernel.read_mounts()
    for device in kernel.loops_of_file(path):
        places = [mount.mount_point for mount in kernel.mounts_of_device(device, mounts)]
        reasons.append(f"mounted at {', '.join(places)}" if places else f"attached as {device}")
    for name in _names(config.pvs_dir):
        known = state.read_json(os.path.join(config.pvs_dir, name)) or {}
        if known.get("volume_id") == volume_id and known.get("nodes"):
            reasons.append(f"attached to node(s) {', '.join(known['nodes'])} as PV {known.get('pv_name')}")
    return reasons


def delete(config: Config, volume_id: str) -> list[str]:
    """Remove a volume that nothing uses: its backing file, record and stale mount targets."""
    check_volume_id(volume_id)
    state.ensure_dirs(config)
    with state.VolumeLock(config, volume_id, wait=10):
        path = config.backing_file(volume_id)
        record = state.load_record(config, volume_id)
        if record is None and not os.path.exists(path):
            raise Refused(f"volume {volume_id} does not exist", "see 'flexvol ls'")
        reasons = in_use(config, volume_id)
        if reasons:
            raise Refused(f"volume {volume_id} is in use: {'; '.join(reasons)}",
                          "stop the pods that use it (the kubelet then unmounts it) and try again")
        removed = []
        for name in _names(config.targets_dir):
            target = state.read_json(os.path.join(config.targets_dir, name)) or {}
            if target.get("volume_id") == volume_id:
                state.remove(os.path.join(config.targets_dir, name))
        if state.remove(path, durable=True):
            removed.append(path)
        if state.remove(config.record_path(volume_id), durable=True):
            removed.append(config.record_path(volume_id))
        return removed


def resize(config: Config, volume_id: str, size: str) -> int:
    """Grow a volume, mounted or not, with the core's expand operation; the new size."""
    from flexvol.core import operations
    from flexvol.core.journal import CallInfo

    check_volume_id(volume_id)
    new = parse_size(size)
    record = state.load_record(config, volume_id)
    if record is None:
        raise Refused(f"volume {volume_id} does not exist", "see 'flexvol ls'")
    # A growth whose filesystem step failed left the file (and the flag) at the bigger size:
    # that size counts, so a retry at the old one is a shrink, not a silent no-op.
    growing = record.get("growing") or {}
    try:
        on_disk = os.stat(config.backing_file(volume_id)).st_size
    except OSError:
        on_disk = 0
    current = max(int(record.get("size_bytes") or 0), int(growing.get("to") or 0), on_disk)
    if new < current:
        unfinished = (f" (its filesystem is still growing to it: run 'flexvol resize {volume_id} "
                      f"{format_bytes(current)}' to finish)") if growing else ""
        raise Refused(f"volume {volume_id} is {human_bytes(current)}{unfinished}; flexvol never "
                      "shrinks a volume", f"ask for at least {human_bytes(current, round_up=True)}")
    path = config.backing_file(volume_id)
    # expand releases a loop device it attached only to grow (loop.detach_loop waits for it).
    operations.expand(config, volume_id, new, CallInfo("toolkit:resize"))
    return os.stat(path).st_size


def _names(directory: str) -> list[str]:
    try:
        return sorted(name for name in os.listdir(directory) if name.endswith(".json"))
    except OSError:
        return []
