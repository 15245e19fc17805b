"""Operator actions on one volume ahead of, or after, the kubelet's calls: create, delete,
resize. Each turns the operator's words (sizes like 1G, a filesystem name) into one core
operation (core/operations.py), the same the driver runs, so a volume made here is exactly one
the driver would have made.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from flexvol.core import kernel, state
from flexvol.core.config import Config
from flexvol.core.errors import Refused
from flexvol.core.options import VolumeSpec, check_fs_type, check_volume_id, parse_size
from flexvol.core.quantity import format_bytes, human_bytes

CREATED_BY = "flexvol create"

Progress = Callable[[int, int], None]


def _spec(volume_id: str, size: str, fs_type: str, allocation: str = "") -> VolumeSpec:
    from flexvol.core.options import ALLOCATION, FS_TYPE, parse_spec

    # parse_spec: the same checks the driver applies to the kubelet's options (minimum sizes).
    return parse_spec({"volumeID": check_volume_id(volume_id), "size": size,
                       FS_TYPE: check_fs_type(fs_type), ALLOCATION: allocation})


def create(config: Config, volume_id: str, size: str, fs_type: str = "ext4", *,
           allocation: str = "", progress: Progress | None = None, from_snapshot: str = "",
           from_volume: str = "") -> state.Record:
    """Create and format a new volume, thick (all its blocks reserved) unless `allocation` says
    thin, as the driver makes one (options.DEFAULT_ALLOCATION).

    Formatting happens here, on the still-sparse file, with formatting.ensure_filesystem: the
    record then says formatted-once, and the driver never formats it again. Reserving first
    would give the file blocks, and the driver rightly refuses to format such a file; so the
    blocks are reserved after, by the driver's own step (backing.ensure_reserved).

    With `from_snapshot` or `from_volume` it is a copy of that snapshot or volume instead, of
    the source's filesystem and at least its size (`size` may be "").
    """
    from flexvol.core import operations
    from flexvol.core.journal import CallInfo

    spec = _spec(volume_id, size, fs_type, allocation)
    return operations.create(config, spec, CallInfo("toolkit:create"), created_by=CREATED_BY,
                             progress=progress, from_snapshot=from_snapshot, from_volume=from_volume)


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
    from flexvol.core import operations

    return operations.in_use(config, volume_id)


def delete(config: Config, volume_id: str) -> list[str]:
    """Remove a volume that nothing uses: its backing file, record and stale mount targets."""
    from flexvol.core import operations
    from flexvol.core.journal import CallInfo

    return operations.delete(config, check_volume_id(volume_id), CallInfo("toolkit:delete"))


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
    growing = record.growing or {}
    try:
        on_disk = os.stat(config.backing_file(volume_id)).st_size
    except OSError:
        on_disk = 0
    current = max(int(record.size_bytes or 0), int(growing.get("to") or 0), on_disk)
    if new < current:
        unfinished = (f" (its filesystem is still growing to it: run 'flexvol resize {volume_id} "
                      f"{format_bytes(current)}' to finish)") if growing else ""
        raise Refused(f"volume {volume_id} is {human_bytes(current)}{unfinished}; flexvol never "
                      "shrinks a volume", f"ask for at least {human_bytes(current, round_up=True)}")
    path = config.backing_file(volume_id)
    # expand releases a loop device it attached only to grow (loop.detach_loop waits for it).
    operations.expand(config, volume_id, new, CallInfo("toolkit:resize"))
    return os.stat(path).st_size
