"""Live I/O of a block device from the kernel's counters in /sys/block/<dev>/stat, and the rates
between two readings (what `flexvol top` shows and the agent exports as metrics).

The file holds one line of counters since the device was set up (Documentation/block/stat.rst):
reads completed, reads merged, sectors read, ms reading, writes completed, writes merged,
sectors written, ms writing, requests in flight, ms with I/O in flight, ms weighted by queue
depth, then discard and flush counters on newer kernels. A sector here is always 512 bytes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

SECTOR_BYTES = 512


@dataclass(frozen=True)
class BlockStat:
    reads: int = 0
    read_sectors: int = 0
    read_ms: int = 0
    writes: int = 0
    write_sectors: int = 0
    write_ms: int = 0
    in_flight: int = 0
    io_ms: int = 0
    queue_ms: int = 0

    @property
    def read_bytes(self) -> int:
        return self.read_sectors * SECTOR_BYTES

    @property
    def write_bytes(self) -> int:
        return self.write_sectors * SECTOR_BYTES

    def __add__(self, other: BlockStat) -> BlockStat:
        # Several loop devices of one volume (a leak) add up to the volume's I/O.
        return BlockStat(*(getattr(self, name) + getattr(other, name) for name in FIELDS))


FIELDS = ("reads", "read_sectors", "read_ms", "writes", "write_sectors", "write_ms", "in_flight",
          "io_ms", "queue_ms")
# Column of each field in the stat line (0-based); merges (1, 5) are not kept.
COLUMNS = (0, 2, 3, 4, 6, 7, 8, 9, 10)


def parse_stat(text: str) -> BlockStat:
    """The counters of one /sys/block/<dev>/stat line; ValueError when it is not one."""
    parts = text.split()
    if len(parts) < 11:
        raise ValueError(f"a block stat line has at least 11 fields, got {len(parts)}: {text[:80]!r}")
    return BlockStat(*(int(parts[column]) for column in COLUMNS))


def read_stat(device: str, sys_block: str = "/sys/block") -> BlockStat | None:
    """The counters of `device` (/dev/loop3 or loop3), None when it is gone or unreadable."""
    try:
        with open(os.path.join(sys_block, os.path.basename(device), "stat")) as handle:
            return parse_stat(handle.read())
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class Rates:
    """I/O over an interval: per second, average latency per request, average queue depth."""

    read_iops: float
    write_iops: float
    read_bytes_per_s: float
    write_bytes_per_s: float
    read_latency_ms: float
    write_latency_ms: float
    in_flight: int
    # share of the interval the device had I/O in flight (0..1), and the average queue depth
    busy: float
    queue_depth: float


def rates(before: BlockStat, after: BlockStat, seconds: float) -> Rates:
    """The rates between two readings `seconds` apart. A counter that went down (the device
    was detached and set up again) counts from zero."""
    seconds = max(seconds, 1e-6)

    def delta(name: str) -> int:
        old, new = getattr(before, name), getattr(after, name)
        return new - old if new >= old else new

    reads, writes = delta("reads"), delta("writes")
    return Rates(
        read_iops=reads / seconds,
        write_iops=writes / seconds,
        read_bytes_per_s=delta("read_sectors") * SECTOR_BYTES / seconds,
        write_bytes_per_s=delta("write_sectors") * SECTOR_BYTES / seconds,
        read_latency_ms=delta("read_ms") / reads if reads else 0.0,
        write_latency_ms=delta("write_ms") / writes if writes else 0.0,
        in_flight=after.in_flight,
        busy=min(1.0, delta("io_ms") / (seconds * 1000)),
        queue_depth=delta("queue_ms") / (seconds * 1000),
    )


def volume_stat(devices: list[str], sys_block: str = "/sys/block") -> BlockStat | None:
    """The summed counters of a volume's loop devices, None when none can be read."""
    found = [stat for stat in (read_stat(device, sys_block) for device in devices) if stat is not None]
    if not found:
        return None
    total = found[0]
    for stat in found[1:]:
        total = total + stat
    return total
