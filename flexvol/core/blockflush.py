"""Writing back a raw block volume's buffers before its backing file is copied.

A raw block volume has no filesystem to freeze: what its user wrote through the device node may
still sit in the device's page cache, not yet in the backing file the copy reads. An fsync of
the device writes it back and BLKFLSBUF drops the clean buffers, so the copy sees every write
that finished before it. Writes that race the copy are the user's (as on a power cut): the copy
is crash-consistent, like a snapshot of a disk.
"""

from __future__ import annotations

import os

from flexvol.core import kernel
from flexvol.core.errors import FlexvolError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from flexvol.core.config import Config

BLKFLSBUF = 0x1261  # _IO(0x12, 97)


def flush_device(device: str) -> None:
    """fsync the block device `device`, then drop its buffers (BLKFLSBUF)."""
    import fcntl

    try:
        fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as error:
        raise FlexvolError(f"cannot open {device} to write back its buffers: {error.strerror}",
                           "check the device with 'flexvol doctor'") from None
    try:
        os.fsync(fd)
        fcntl.ioctl(fd, BLKFLSBUF, 0)
    except OSError as error:
        raise FlexvolError(f"writing back the buffers of {device} failed: {error.strerror}",
                           "retry; the copy was not made") from None
    finally:
        os.close(fd)


def flush_volume(config: Config, volume_id: str) -> list[str]:
    """Flush every loop device of the volume's backing file; the devices flushed (none when the
    volume is not attached: its file is all there is)."""
    devices = kernel.loops_of_file(config.backing_file(volume_id))
    for device in devices:
        flush_device(device)
    return devices
