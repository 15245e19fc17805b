"""What NodeGetVolumeStats reports: a mounted volume's bytes and inodes, and its condition.

The condition is abnormal, with the reason, when the volume's data is at risk in a way the pod
cannot see yet: the backing file is gone (the loop device holds the only copy), smaller than
the volume (truncated: the filesystem runs past its end), or the kernel counted filesystem
errors (ext4's errors_count).
"""

from __future__ import annotations

import os

from flexvol.core.config import Config
from flexvol.core.records import Record
from flexvol.csi.proto import csi_pb2

Unit = csi_pb2.VolumeUsage.Unit


def usage(path: str) -> list[csi_pb2.VolumeUsage]:
    """Bytes and inodes of the filesystem mounted at `path` (statvfs, as df shows them)."""
    found = os.statvfs(path)
    block = found.f_frsize
    return [
        csi_pb2.VolumeUsage(unit=Unit.BYTES, total=found.f_blocks * block,
                            available=found.f_bavail * block,
                            used=(found.f_blocks - found.f_bfree) * block),
        csi_pb2.VolumeUsage(unit=Unit.INODES, total=found.f_files, available=found.f_favail,
                            used=found.f_files - found.f_ffree),
    ]


def block_usage(device: str) -> list[csi_pb2.VolumeUsage]:
    """A raw block volume's size in bytes, as the kernel has its device (no filesystem to ask
    what is used)."""
    from flexvol.core import kernel

    return [csi_pb2.VolumeUsage(unit=Unit.BYTES, total=kernel.block_size_bytes(device) or 0)]


def condition(config: Config, record: Record, device: str) -> csi_pb2.VolumeCondition:
    problems = []
    path = config.backing_file(record.volume_id)
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        problems.append(f"its backing file {path} is gone; {device} holds the only copy of the data")
    else:
        wanted = int(record.size_bytes or 0)
        if size < wanted:
            problems.append(f"its backing file {path} is {size} bytes, smaller than the volume's "
                            f"{wanted}: it was truncated")
    errors = _fs_errors(device)
    if errors:
        problems.append(f"the kernel counted {errors} filesystem error(s) on {device}; check it with "
                        f"'flexvol fsck {record.volume_id}' once it is unmounted")
    if problems:
        return csi_pb2.VolumeCondition(abnormal=True, message="; ".join(problems))
    return csi_pb2.VolumeCondition(abnormal=False, message="healthy")


def _fs_errors(device: str) -> int:
    """ext4's count of errors since the filesystem was made (0 where there is no such count)."""
    try:
        with open(f"/sys/fs/ext4/{os.path.basename(device)}/errors_count") as handle:
            return int(handle.read().strip() or 0)
    except (OSError, ValueError):
        return 0

