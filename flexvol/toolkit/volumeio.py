"""The I/O counters of every attached volume, read together (what `flexvol top` samples twice
and the agent's metrics export): the kernel's block statistics of its loop devices, joined with
the PV and claim its record names."""

from __future__ import annotations

import time
from dataclasses import dataclass

from flexvol.core import blockstat
from flexvol.core.blockstat import BlockStat, Rates
from flexvol.core.config import Config
from flexvol.toolkit import inventory


@dataclass
class VolumeIO:
    volume_id: str
    pv: str
    claim: str
    devices: list[str]
    stat: BlockStat


@dataclass
class Sample:
    at: float  # time.monotonic() of the reading
    volumes: dict[str, VolumeIO]


def sample(config: Config, views: list[inventory.VolumeView] | None = None,
           sys_block: str = "/sys/block") -> Sample:
    """One reading of every volume with a loop device attached."""
    views = inventory.volumes(config) if views is None else views
    found = {}
    for view in views:
        stat = blockstat.volume_stat(view.loop_devices, sys_block) if view.loop_devices else None
        if stat is not None:
            found[view.volume_id] = VolumeIO(view.volume_id, ", ".join(view.pvs), view.claim,
                                             list(view.loop_devices), stat)
    return Sample(time.monotonic(), found)


@dataclass
class VolumeRates:
    io: VolumeIO
    rates: Rates


def between(before: Sample, after: Sample) -> list[VolumeRates]:
    """Rates of the volumes in `after`, busiest first; one attached since `before` shows no I/O
    until the next sample (its counters cover time before it)."""
    seconds = after.at - before.at
    rows = []
    for volume_id, now in after.volumes.items():
        then = before.volumes.get(volume_id)
        rows.append(VolumeRates(now, blockstat.rates(then.stat if then else now.stat, now.stat, seconds)))
    rows.sort(key=lambda row: (-(row.rates.read_bytes_per_s + row.rates.write_bytes_per_s),
                               -(row.rates.read_iops + row.rates.write_iops), row.io.volume_id))
    return rows
