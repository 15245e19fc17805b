"""What a test left behind: loop devices and mounts under a test's directories."""

from __future__ import annotations

from flexvol.core import kernel


def leaked_loops(marker: str) -> list[str]:
    return sorted(f"{device} -> {backing}" for device, backing in kernel.loop_devices().items()
                  if marker in backing)


def leaked_mounts(marker: str) -> list[str]:
    return sorted(mount.mount_point for mount in kernel.read_mounts() if marker in mount.mount_point)
