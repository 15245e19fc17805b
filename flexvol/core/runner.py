"""The one way flexvol runs an external command.

argv lists only (never a shell string); stdin is /dev/null; the child's stdout and stderr go to
our own pipes, never to the caller's (a child holding the kubelet's pipe hangs the call,
docs/flexvolume.md section 8.8); a fixed environment; its own session, killed as a group on timeout.

Built on posix_spawn rather than `subprocess`, whose import alone costs more than a whole
driver call's other imports on the kubelet's per-call path.
"""

from __future__ import annotations

import os
import select
import time

from flexvol.core.config import TOOL_PATH
from flexvol.core.errors import CommandFailed, CommandTimedOut

# signal.SIGKILL without importing `signal`, which pulls in `enum`.
SIGKILL = 9
ENVIRONMENT = {"PATH": TOOL_PATH, "LC_ALL": "C", "LANG": "C"}
# Descriptors a child must inherit: our volume locks, so that an orphaned mkfs or losetup
# keeps the volume locked until it exits (docs/design.md section 4).
inherited_fds: set[int] = set()
# Every command run during this call, for the journal: (argv as a shell line, exit code, ms).
history: list[tuple[str, int, float]] = []
_resolved: dict[str, str] = {}


class Done:
    __slots__ = ("argv", "code", "err", "out")

    def __init__(self, argv: list[str], code: int, out: str, err: str) -> None:
        self.argv = argv
        self.code = code
        self.out = out
        self.err = err


def shell_line(argv: list[str]) -> str:
    """argv as a line that can be pasted into a shell (shlex.join without importing re)."""
    safe = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./-_")
    parts = []
    for arg in argv:
        if arg and all(char in safe for char in arg):
            parts.append(arg)
        else:
            parts.append("'" + arg.replace("'", "'\"'\"'") + "'")
    return " ".join(parts)


def which(name: str) -> str | None:
    if "/" in name:
        return name if os.access(name, os.X_OK) else None
    if name in _resolved:
        return _resolved[name]
    for directory in TOOL_PATH.split(":"):
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            _resolved[name] = candidate
            return candidate
    return None


def run(argv: list[str], *, timeout: float, ok: tuple[int, ...] = (0,),
        what: str = "", pass_fds: tuple[int, ...] = ()) -> Done:
    """Run argv to completion within `timeout` seconds; `pass_fds` are inherited under their
    own numbers (for a /proc/self/fd/N path in argv).

    Returns Done when the exit code is in `ok`; raises CommandFailed otherwise, CommandTimedOut
    after killing the command's process group, and CommandFailed when the tool is missing.
    """
    argv = [os.fspath(arg) for arg in argv]
    line = shell_line(argv)
    executable = which(argv[0])
    if executable is None:
        raise CommandFailed(f"{argv[0]} is not installed (looked in {TOOL_PATH})",
                            f"install the package that provides {argv[0]}", argv=argv)
    started = time.monotonic()
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    devnull = os.open(os.devnull, os.O_RDONLY)
    for fd in (*inherited_fds, *pass_fds):
        os.set_inheritable(fd, True)
    try:
        pid = os.posix_spawn(
            executable, argv, ENVIRONMENT,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, devnull, 0),
                (os.POSIX_SPAWN_DUP2, out_write, 1),
                (os.POSIX_SPAWN_DUP2, err_write, 2),
            ],
            setsid=True,
        )
    except OSError as error:
        for fd in (out_read, out_write, err_read, err_write, devnull):
            os.close(fd)
        raise CommandFailed(f"cannot start {line}: {error.strerror}", argv=argv) from None
    finally:
        for fd in pass_fds:
            os.set_inheritable(fd, False)
    for fd in (out_write, err_write, devnull):
        os.close(fd)
    out, err, timed_out = _collect(pid, out_read, err_read, started + timeout)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    elapsed_ms = (time.monotonic() - started) * 1000
    history.append((line, code, round(elapsed_ms, 1)))
    stdout = out.decode(errors="replace")
    stderr = err.decode(errors="replace")
    if timed_out:
        raise CommandTimedOut(f"{what or argv[0]} did not finish within {timeout:g}s and was killed: {line}",
                              "check the node for hung I/O on the data root", argv=argv, code=code,
                              stderr=stderr)
    if code not in ok:
        tail = _tail(stderr or stdout)
        raise CommandFailed(f"{what or argv[0]} failed (exit {code}): {line}" + (f": {tail}" if tail else ""),
                            argv=argv, code=code, stderr=stderr)
    return Done(argv, code, stdout, stderr)


def _collect(pid: int, out_fd: int, err_fd: int, deadline: float) -> tuple[bytes, bytes, bool]:
    chunks: dict[int, list[bytes]] = {out_fd: [], err_fd: []}
    poller = select.poll()
    open_fds = {out_fd, err_fd}
    for fd in open_fds:
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    timed_out = False
    try:
        while open_fds:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                _kill_group(pid)
                break
            for fd, _event in poller.poll(remaining * 1000):
                data = os.read(fd, 65536)
                if data:
                    chunks[fd].append(data)
                else:
                    poller.unregister(fd)
                    open_fds.discard(fd)
    finally:
        os.close(out_fd)
        os.close(err_fd)
    return b"".join(chunks[out_fd]), b"".join(chunks[err_fd]), timed_out


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, SIGKILL)
    except ProcessLookupError:
        pass


def _tail(text: str, lines: int = 3) -> str:
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept)[:400]
