"""mount(2) and umount2(2) made in this process, with mount(8) and umount(8) as the fallback.

`mount -c -t ext4 -o nosuid,nodev,rw -w DEV DIR` is a fork and exec (about 1.2 ms on a small
node, more under load) for one system call. Only what maps onto the call's flags one to one is
made in-process: plain flag options (FLAGS), no filesystem data. Anything else, and any call
that fails, goes to the tool as before: its behaviour and its error messages stay the reference
(a failed mount(2) changes nothing, so running the tool after it is the same request again).

Python's standard library has no mount(2): it is called through `_ctypes`, the C half of
`ctypes`, because `import ctypes` costs the FlexVolume driver's per-call path about 2.5 ms, more
than the process it saves, while `_ctypes` costs about 0.5 ms. Where `_ctypes` or libc's symbols
are missing, the tools are used.
"""

from __future__ import annotations

import os
import time

from flexvol.core import runner

# <linux/mount.h>
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_DIRSYNC = 128
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25
UMOUNT_NOFOLLOW = 8
# The options mount(8) turns into exactly these flags and nothing else; "rw" is no flag.
FLAGS = {"ro": MS_RDONLY, "rw": 0, "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC,
         "sync": MS_SYNCHRONOUS, "dirsync": MS_DIRSYNC, "noatime": MS_NOATIME,
         "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME, "strictatime": MS_STRICTATIME,
         "lazytime": MS_LAZYTIME}

# (mount, umount2) once bound; False once found unusable in this process.
_calls: tuple | bool | None = None


def flags_of(options: list[str] | tuple[str, ...]) -> int | None:
    """The mount flags of `options`, or None when one is not a plain flag (mount(8) then)."""
    flags = 0
    for option in options:
        flag = FLAGS.get(option)
        if flag is None:
            return None
        flags |= flag
    return flags


def _bind() -> tuple | None:
    global _calls
    if _calls is None:
        try:
            import _ctypes

            class Int(_ctypes._SimpleCData):
                _type_ = "i"

            class Function(_ctypes.CFuncPtr):
                _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
                _restype_ = Int

            class ULong(_ctypes._SimpleCData):
                _type_ = "L"

            libc = _ctypes.dlopen(None)
            _calls = (Function(_ctypes.dlsym(libc, "mount")), Function(_ctypes.dlsym(libc, "umount2")),
                      ULong, _ctypes.get_errno)
        except (ImportError, AttributeError, OSError, TypeError):
            _calls = False
    return _calls or None


def mount(source: str | None, target: str, fs_type: str | None, flags: int, argv: list[str], *,
          timeout: float, pass_fds: tuple[int, ...] = ()) -> None:
    """mount(2) of `source` at `target`; if that is unavailable or fails, `argv` (the same
    mount with mount(8)) through the runner, which raises its CommandFailed."""
    calls = _bind()
    if calls is not None:
        started = time.monotonic()
        call, _umount, ulong, get_errno = calls
        result = call(None if source is None else os.fsencode(source), os.fsencode(target),
                      None if fs_type is None else fs_type.encode(), ulong(flags), None)
        if result == 0:
            _journal(f"mount(2) {runner.shell_line(argv)}", started)
            return
        _journal(f"mount(2) {runner.shell_line(argv)}: {os.strerror(get_errno())}", started, code=1)
    runner.run(argv, timeout=timeout, what="mount", pass_fds=pass_fds)


def umount(target: str, argv: list[str], *, timeout: float, pass_fds: tuple[int, ...] = ()) -> None:
    """umount2(2) of `target`, never following a symlink at its last component; if that is
    unavailable or fails, `argv` (umount(8)) through the runner, which raises its CommandFailed."""
    calls = _bind()
    if calls is not None:
        started = time.monotonic()
        _mount, call, _ulong, get_errno = calls
        if call(os.fsencode(target), UMOUNT_NOFOLLOW) == 0:
            _journal(f"umount2(2) {runner.shell_line(argv)}", started)
            return
        _journal(f"umount2(2) {runner.shell_line(argv)}: {os.strerror(get_errno())}", started, code=1)
    runner.run(argv, timeout=timeout, what="umount", pass_fds=pass_fds)


def _journal(line: str, started: float, code: int = 0) -> None:
    runner.current().history.append((line, code, round((time.monotonic() - started) * 1000, 1)))

