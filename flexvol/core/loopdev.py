"""Attach and detach loop devices with the kernel's own ioctls (loop(4)), without losetup.

`losetup --find --show --direct-io=on FILE` is a fork and exec (2 to 3 ms on a small node) for
what is three system calls: LOOP_CTL_GET_FREE on /dev/loop-control picks a free device, and
LOOP_CONFIGURE (Linux 5.8+) binds the file with its flags in one step, so no half-configured
device is ever visible. `losetup --detach` is one LOOP_CLR_FD. Where this path is not available
(an older kernel, a /dev without the device nodes) `Unavailable` tells the caller to run losetup.
Each step is added to the call's history (runner.current()), so the call journal still says what was done.
"""

from __future__ import annotations

import errno
import os
import sys
import time

from flexvol.core import runner

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

LOOP_CLR_FD = 0x4C01
LOOP_SET_STATUS64 = 0x4C04
LOOP_GET_STATUS64 = 0x4C05
LO_FLAGS_AUTOCLEAR = 4
# struct loop_info64: five u64, then lo_number, lo_encrypt_type, lo_encrypt_key_size, lo_flags.
INFO_SIZE = 232
INFO_FLAGS_OFFSET = 5 * 8 + 3 * 4
LOOP_SET_CAPACITY = 0x4C07
LOOP_CONFIGURE = 0x4C0A
LOOP_CTL_GET_FREE = 0x4C82
LO_FLAGS_DIRECT_IO = 16
# struct loop_config: u32 fd, u32 block_size, struct loop_info64 info (232 bytes: five u64,
# four u32 of which lo_flags is the last, then lo_file_name[64], ...), u64 reserved[8].
CONFIG_SIZE = 304
FLAGS_OFFSET = 8 + 5 * 8 + 3 * 4
FILE_NAME_OFFSET = FLAGS_OFFSET + 4
FILE_NAME_SIZE = 64
LOOP_CONTROL = "/dev/loop-control"


class Unavailable(Exception):
    """The ioctl path cannot be used on this machine; use losetup instead."""


class RaceLost(Exception):
    """Every free device we were handed was taken by another caller first."""


def _config(backing_fd: int, path: str, direct_io: bool) -> bytes:
    config = bytearray(CONFIG_SIZE)
    config[0:4] = backing_fd.to_bytes(4, sys.byteorder)
    flags = LO_FLAGS_DIRECT_IO if direct_io else 0
    config[FLAGS_OFFSET:FLAGS_OFFSET + 4] = flags.to_bytes(4, sys.byteorder)
    # Informational only (LOOP_GET_STATUS); sysfs's backing_file comes from the open file.
    name = os.fsencode(path)[:FILE_NAME_SIZE - 1]
    config[FILE_NAME_OFFSET:FILE_NAME_OFFSET + len(name)] = name
    return bytes(config)


def _open_backing(path: str) -> tuple[int, bool]:
    """The backing file opened for the loop device, with O_DIRECT where its filesystem allows."""
    try:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_DIRECT), True
    except OSError as error:
        if error.errno != errno.EINVAL:  # EINVAL: this filesystem has no O_DIRECT
            raise
    return os.open(path, os.O_RDWR | os.O_CLOEXEC), False


def attach(path: str, before_bind: Callable[[str], None], attempts: int = 64) -> str:
    """Bind `path` to a free loop device with direct I/O requested; return the device.

    `before_bind(device)` runs before each bind, so the caller can record the device first.
    """
    import fcntl

    started = time.monotonic()
    try:
        control = os.open(LOOP_CONTROL, os.O_RDWR | os.O_CLOEXEC)
    except OSError as error:
        raise Unavailable(f"{LOOP_CONTROL}: {error.strerror}") from error
    try:
        backing, direct_io = _open_backing(path)
        try:
            config = _config(backing, path, direct_io)
            for _attempt in range(attempts):
                device = f"/dev/loop{fcntl.ioctl(control, LOOP_CTL_GET_FREE)}"
                device_fd = _open_node(device, os.O_RDWR)
                try:
                    before_bind(device)
                    fcntl.ioctl(device_fd, LOOP_CONFIGURE, config)
                except OSError as error:
                    if error.errno == errno.EBUSY:  # another caller bound it first
                        # Many callers at once all get the same lowest free number: a short,
                        # growing, pid-spread pause lets them draw different ones.
                        time.sleep(((os.getpid() + _attempt) % 7 + 1) * 0.0002 * min(_attempt + 1, 8))
                        continue
                    if error.errno in (errno.ENOTTY, errno.EINVAL):
                        raise Unavailable(f"LOOP_CONFIGURE on {device}: {error.strerror}") from error
                    raise
                finally:
                    os.close(device_fd)
                _journal(f"ioctl LOOP_CONFIGURE {device} {path}", started)
                return device
        finally:
            os.close(backing)
    finally:
        os.close(control)
    raise RaceLost(f"no free loop device after {attempts} attempts: other callers took each one first")


def detach(device: str) -> None:
    """Unbind `device` (the kernel finishes at the last close, as for `losetup --detach`)."""
    _device_ioctl(device, LOOP_CLR_FD, "LOOP_CLR_FD")


def keep(device: str) -> bool:
    """Take back a detach the kernel deferred (LOOP_CLR_FD on a device held open elsewhere only
    sets autoclear): clear autoclear, so the device stays bound when its holder closes it.
    True if the device is still bound and now kept."""
    import fcntl

    fd = _open_node(device, os.O_RDONLY)
    try:
        info = bytearray(INFO_SIZE)
        try:
            fcntl.ioctl(fd, LOOP_GET_STATUS64, info)
        except OSError as error:
            if error.errno == errno.ENXIO:  # already let go
                return False
            raise
        flags = int.from_bytes(info[INFO_FLAGS_OFFSET:INFO_FLAGS_OFFSET + 4], sys.byteorder)
        if flags & LO_FLAGS_AUTOCLEAR:
            flags &= ~LO_FLAGS_AUTOCLEAR
            info[INFO_FLAGS_OFFSET:INFO_FLAGS_OFFSET + 4] = flags.to_bytes(4, sys.byteorder)
            try:
                fcntl.ioctl(fd, LOOP_SET_STATUS64, bytes(info))
            except OSError as error:
                if error.errno == errno.ENXIO:
                    return False
                raise
        return True
    finally:
        os.close(fd)


def set_capacity(device: str) -> None:
    """Make `device` take its backing file's new size (`losetup --set-capacity`)."""
    _device_ioctl(device, LOOP_SET_CAPACITY, "LOOP_SET_CAPACITY")


def _device_ioctl(device: str, request: int, name: str) -> None:
    import fcntl

    started = time.monotonic()
    fd = _open_node(device, os.O_RDONLY)
    try:
        fcntl.ioctl(fd, request)
    except OSError as error:
        if error.errno != errno.ENXIO:  # ENXIO: nothing bound (any more)
            raise
    finally:
        os.close(fd)
    _journal(f"ioctl {name} {device}", started)


def _open_node(device: str, mode: int) -> int:
    try:
        return os.open(device, mode | os.O_CLOEXEC)
    except FileNotFoundError as error:
        raise Unavailable(f"{device} has no device node") from error


def _journal(line: str, started: float) -> None:
    runner.current().history.append((line, 0, round((time.monotonic() - started) * 1000, 1)))
