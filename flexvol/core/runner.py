"""The one way flexvol runs an external command, and the call it runs it for.

argv lists only (never a shell string); stdin is /dev/null; the child's stdout and stderr go to
our own pipes, never to the caller's (a child holding the kubelet's pipe hangs the call,
docs/flexvolume.md section 8.8); a fixed environment; its own session, killed as a group on timeout.

Built on posix_spawn rather than `subprocess`, whose import alone costs more than a whole
driver call's other imports on the kubelet's per-call path.

What a call owns (the lock descriptors its children inherit, the commands it ran, the locks it
holds) lives in its CallContext, never in module globals: the CSI plugin serves RPCs on a
thread pool, and one RPC's mkfs must not inherit another's lock nor land in its journal line.
"""

from __future__ import annotations

import _thread  # built in (no file lookup on the driver's path), unlike _contextvars here
import os
import select
import time

from flexvol.core.config import TOOL_PATH
from flexvol.core.errors import CommandFailed, CommandTimedOut

# signal.SIGKILL without importing `signal`, which pulls in `enum`.
SIGKILL = 9
ENVIRONMENT = {"PATH": TOOL_PATH, "LC_ALL": "C", "LANG": "C"}
# argv[0] -> its path on TOOL_PATH: a cache of a fixed answer, the same for every call.
_resolved: dict[str, str] = {}


class CallContext:
    """What one call (a driver verb, a CSI RPC, a toolkit action) owns while it runs.

    `fds`: descriptors its children inherit, its volume locks, so that an orphaned mkfs or
    losetup keeps the volume locked until it exits (docs/design.md section 4); `history`: every
    command run or ioctl made, for its journal line: (argv as a shell line, exit code, ms);
    `held`: lock path -> how deep the call holds it (VolumeLock is re-entrant within a call).
    A nested call shares its caller's locks (they are held by the same flow) and keeps its own
    history.
    """

    __slots__ = ("fds", "held", "history")

    def __init__(self, parent: CallContext | None = None) -> None:
        self.fds: set[int] = parent.fds if parent is not None else set()
        self.held: dict[str, int] = parent.held if parent is not None else {}
        self.history: list[tuple[str, int, float]] = []


# Per thread: each thread sees only its own call (a CSI RPC runs on one pool thread).
_calls = _thread._local()


def current() -> CallContext:
    """The call this thread is running; a thread that opened none gets one of its own."""
    try:
        return _calls.context
    except AttributeError:
        _calls.context = context = CallContext()
        return context


class call:  # lower case: used as `with runner.call():`, like a function
    """`with runner.call() as context:` runs one call in a context of its own, then restores
    the one before (nested: the caller's locks stay visible, see CallContext)."""

    __slots__ = ("context", "previous")

    def __enter__(self) -> CallContext:
        self.previous: CallContext | None = getattr(_calls, "context", None)
        self.context = _calls.context = CallContext(self.previous)
        return self.context

    def __exit__(self, *exc: object) -> None:
        if self.previous is None:
            del _calls.context
        else:
            _calls.context = self.previous


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


def run(argv: list[str], *, timeout: float, ok: tuple[int, ...] | None = (0,),
        what: str = "", pass_fds: tuple[int, ...] = (), merge_stderr: bool = False,
        env: dict[str, str] | None = None) -> Done:
    """Run argv to completion within `timeout` seconds; `pass_fds` are inherited under their
    own numbers (for a /proc/self/fd/N path in argv), as are the call's lock descriptors.

    Returns Done when the exit code is in `ok` (any code when `ok` is None); raises
    CommandFailed otherwise, CommandTimedOut after killing the command's process group (its
    output so far in `stdout`), and CommandFailed when the tool is missing or cannot start.
    `merge_stderr`: stderr into the same pipe as stdout, one stream in `out`, as the kubelet
    reads a driver. `env`: the child's whole environment instead of ENVIRONMENT.
    """
    argv = [os.fspath(arg) for arg in argv]
    line = shell_line(argv)
    # A path is spawned as given, so that a file that cannot be executed says why.
    executable = argv[0] if "/" in argv[0] else which(argv[0])
    if executable is None:
        raise CommandFailed(f"{argv[0]} is not installed (looked in {TOOL_PATH})",
                            f"install the package that provides {argv[0]}", argv=argv)
    context = current()
    started = time.monotonic()
    out_read, out_write = os.pipe()
    err_read, err_write = (-1, out_write) if merge_stderr else os.pipe()
    devnull = os.open(os.devnull, os.O_RDONLY)
    # dup2 of a descriptor onto itself clears its close-on-exec flag in the child only
    # (glibc >= 2.29): the parent's flags never change, so a child another thread starts at the
    # same moment inherits none of this call's descriptors.
    actions = [(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, out_write, 1),
               (os.POSIX_SPAWN_DUP2, err_write, 2)]
    actions += [(os.POSIX_SPAWN_DUP2, fd, fd) for fd in (*context.fds, *pass_fds)]
    try:
        pid = os.posix_spawn(executable, argv, ENVIRONMENT if env is None else env,
                             file_actions=actions, setsid=True)
    except OSError as error:
        for fd in {out_read, out_write, err_read, err_write, devnull} - {-1}:
            os.close(fd)
        raise CommandFailed(f"cannot start {line}: {error.strerror}", argv=argv) from None
    for fd in {out_write, err_write, devnull}:
        os.close(fd)
    out, err, timed_out = _collect(pid, out_read, err_read, started + timeout)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    elapsed_ms = (time.monotonic() - started) * 1000
    context.history.append((line, code, round(elapsed_ms, 1)))
    stdout = out.decode(errors="replace")
    stderr = err.decode(errors="replace")
    if timed_out:
        raise CommandTimedOut(f"{what or argv[0]} did not finish within {timeout:g}s and was killed: {line}",
                              "check the node for hung I/O on the data root", argv=argv, code=code,
                              stderr=stderr, stdout=stdout)
    if ok is not None and code not in ok:
        tail = _tail(stderr or stdout)
        raise CommandFailed(f"{what or argv[0]} failed (exit {code}): {line}" + (f": {tail}" if tail else ""),
                            argv=argv, code=code, stderr=stderr)
    return Done(argv, code, stdout, stderr)


def _collect(pid: int, out_fd: int, err_fd: int, deadline: float) -> tuple[bytes, bytes, bool]:
    """Read both pipes (err_fd -1: stderr shares the stdout pipe) until they close or the
    deadline passes, when the child's process group is killed."""
    open_fds = {out_fd, err_fd} - {-1}
    chunks: dict[int, list[bytes]] = {fd: [] for fd in (out_fd, err_fd)}
    poller = select.poll()
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
        for fd in {out_fd, err_fd} - {-1}:
            os.close(fd)
    return b"".join(chunks[out_fd]), b"".join(chunks[err_fd]), timed_out


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, SIGKILL)
    except ProcessLookupError:
        pass


def _tail(text: str, lines: int = 3) -> str:
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept)[:400]
