"""The write guard on a mount dir while nothing is mounted over it (README, Reboots).

Before a volume is mounted over a pod's dir, the dir itself gets the immutable attribute; on
unmount it is lifted so the kubelet can remove the dir. If the mount is lost behind the driver's
back (a reboot, a manual umount) while a container still uses the dir, its writes fail instead
of silently filling the node's root disk. The immutable attribute binds root too, which mode 000
would not, and costs one ioctl (no chattr process).
"""

from __future__ import annotations

import os

from flexvol.core import kernel
from flexvol.core.errors import FlexvolError

# FS_IOC_GETFLAGS / FS_IOC_SETFLAGS and FS_IMMUTABLE_FL from linux/fs.h (ioctl_iflags(2)).
FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_IMMUTABLE_FL = 0x10


def _immutable(path: str, wanted: bool) -> bool:
    """Set or clear the immutable attribute of the directory `path`; True if it changed.

    The dir is reached without following any symlink (mountdir.py): a guard never lands on a
    dir a symlink points to. False also where the filesystem has no such attribute (the guard
    is best effort there).
    """
    from flexvol.core import mountdir

    try:
        opened = mountdir.open_dir(mountdir.check_path(path))
    except FlexvolError:
        return False  # a symlink or a path that cannot be a mount dir: nothing of ours to guard
    if opened is None:
        return False
    with opened:
        return set_immutable(opened.fd, path, wanted)


def set_immutable(fd: int, path: str, wanted: bool) -> bool:
    """Set or clear the immutable attribute of the open directory `fd` (named `path`)."""
    import fcntl
    import sys

    flags = bytearray(8)
    try:
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, flags)
    except OSError:
        return False
    value = int.from_bytes(flags[:4], sys.byteorder)
    if bool(value & FS_IMMUTABLE_FL) == wanted:
        return False
    value = value | FS_IMMUTABLE_FL if wanted else value & ~FS_IMMUTABLE_FL
    try:
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, value.to_bytes(4, sys.byteorder) + bytes(4))
    except OSError as error:
        if wanted:
            return False
        raise FlexvolError(f"cannot lift the write guard (immutable attribute) of {path}: "
                           f"{error.strerror}", f"run 'chattr -i {path}' by hand") from None
    return True


def set_write_guard(target: str) -> bool:
    """Make the still-unmounted mount dir refuse writes before a volume is mounted over it."""
    if kernel.mounts_at(target):
        return False
    return _immutable(target, True)


def lift_write_guard(target: str) -> bool:
    """Let the kubelet remove the dir again once nothing is mounted there."""
    if kernel.mounts_at(target):
        return False
    return _immutable(target, False)


def is_guarded(target: str) -> bool:
    """Whether the dir `target` carries the write guard now (what a rollback checks)."""
    try:
        fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        return is_immutable_fd(fd)
    finally:
        os.close(fd)


def is_immutable_fd(fd: int) -> bool:
    """Whether the open dir `fd` carries the immutable attribute."""
    import fcntl
    import sys

    flags = bytearray(8)
    try:
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, flags)
    except OSError:
        return False
    return bool(int.from_bytes(flags[:4], sys.byteorder) & FS_IMMUTABLE_FL)
