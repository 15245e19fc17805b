"""The capacity budget: the sum of all volume sizes (committed) may reach the pool
filesystem's size times the ratio in <data root>/overcommit (default 1: never more promised
than the pool holds). Checked by the driver and the toolkit alike when a volume is created or
grown (volume._check_pool_space), and shown by `flexvol capacity`.
"""

from __future__ import annotations

import os

from flexvol.config import Config
from flexvol.errors import Refused
from flexvol.quantity import format_bytes

DEFAULT_OVERCOMMIT = 1.0


def check(config: Config, size: int, volume_id: str, pool_bytes: int) -> None:
    """Refuse `size` for `volume_id` if it would push the committed sum past the budget."""
    ratio = overcommit_ratio(config)
    budget = int(pool_bytes * ratio)
    committed = committed_bytes(config, excluding=volume_id) + size
    if committed > budget:
        raise Refused(
            f"volume {volume_id} at {format_bytes(size)} would commit {format_bytes(committed)} of the "
            f"pool's budget {format_bytes(budget)} ({ratio:g} x {format_bytes(pool_bytes)}): "
            f"{format_bytes(committed - budget)} over",
            f"delete unused volumes, ask for less, or raise the ratio in {config.overcommit_path}")


def overcommit_ratio(config: Config) -> float:
    try:
        with open(config.overcommit_path, encoding="ascii") as handle:
            ratio = float(handle.read().strip())
    except (OSError, ValueError):
        return DEFAULT_OVERCOMMIT
    return ratio if ratio > 0 else DEFAULT_OVERCOMMIT


def committed_bytes(config: Config, excluding: str = "") -> int:
    """The sum of every backing file's size (what the volumes were promised)."""
    total = 0
    skip = excluding + ".img"
    try:
        with os.scandir(config.volumes_dir) as entries:
            for entry in entries:
                if entry.name.endswith(".img") and entry.name != skip:
                    try:
                        total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
    except OSError:
        return 0
    return total
