"""flexvol's on-disk memory: records, the PV and mount-target indexes, and volume locks.

The kernel is the truth about what is attached and mounted; these files remember what the
kernel cannot: that a volume was formatted (so it is never formatted again), which PV name maps
to which volume (detach receives only the PV name), and what a call was in the middle of.
"""

from __future__ import annotations

import errno
import os
import time

from flexvol.core import runner, wirejson
from flexvol.core.config import Config
from flexvol.core.errors import Busy, FlexvolError, StateCorrupt
from flexvol.core.records import SCHEMA, Attachment, Record, Target

__all__ = ["SCHEMA", "Attachment", "Record", "Target"]
LOCK_WAIT_SECONDS = 90.0


def ensure_dirs(config: Config) -> None:
    """Create the data root's directories, readable by root only."""
    for path in (config.data_root, config.volumes_dir, config.records_dir, config.pvs_dir,
                 config.targets_dir, config.locks_dir, config.log_dir):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        except OSError as error:
            raise FlexvolError(f"cannot create {path}: {error.strerror}",
                               "check that the data root (FLEXVOL_ROOT) is writable") from None


def atomic_write(path: str, data: bytes, *, durable: bool = True) -> None:
    """Replace `path` with `data`: temp file in the same directory, fsync, rename, fsync dir.

    A crash leaves either the old or the new content, never a torn file.
    """
    directory = os.path.dirname(path)
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temporary, path)
        if durable:
            fsync_dir(directory)
    except OSError as error:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise FlexvolError(f"cannot write {path}: {error.strerror}", write_hint(error)) from None


def read_json(path: str) -> dict | None:
    """The JSON object stored at `path`, None if there is none, StateCorrupt if unreadable."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise StateCorrupt(f"cannot read {path}: {error.strerror}") from None
    try:
        value = wirejson.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        value = None
    if not isinstance(value, dict):
        raise StateCorrupt(f"record {path} is corrupt",
                           "move it aside and retry: a volume's record is rebuilt from its backing "
                           "file, a mount dir's or PV's by the next mount or attach")
    return value


def write_hint(error: OSError) -> str:
    if error.errno == errno.ENOSPC:
        return "free space under the data root"
    if error.errno == errno.EROFS:
        return "the data root is read-only; remount it read-write"
    return "check that the data root is writable"


def fsync_dir(directory: str) -> None:
    """Make the renames and removals in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove(path: str, *, durable: bool = False) -> bool:
    try:
        os.unlink(path)
        if durable:
            fsync_dir(os.path.dirname(path))
    except FileNotFoundError:
        return False
    except OSError as error:
        # A read-only data root (EROFS), or a directory where a record belongs (EISDIR).
        raise FlexvolError(f"cannot remove {path}: {error.strerror}", write_hint(error)) from None
    return True


# ---- volume records ------------------------------------------------------------------------

def load_record(config: Config, volume_id: str) -> Record | None:
    path = config.record_path(volume_id)
    data = read_json(path)
    return None if data is None else Record.from_json(data, path)


def new_record(volume_id: str, size_bytes: int, fs_type: str) -> Record:
    return Record(volume_id, size_bytes, fs_type, now())


def save_record(config: Config, record: Record, *, durable: bool = True) -> None:
    atomic_write(config.record_path(record.volume_id),
                 (wirejson.dumps(record.to_json()) + "\n").encode(), durable=durable)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ---- PV name -> volume id (detach gets only the PV name, docs/flexvolume.md section 8.5) -----

def pv_path(config: Config, pv_name: str) -> str:
    return os.path.join(config.pvs_dir, pv_name + ".json")


def load_pv(config: Config, pv_name: str) -> Attachment | None:
    path = pv_path(config, pv_name)
    data = read_json(path)
    return None if data is None else Attachment.from_json(data, path)


def save_pv(config: Config, pv_name: str, volume_id: str, nodes: list[str]) -> None:
    """Not fsynced: if a power loss drops it, isattached answers false and the controller
    attaches again (attach is idempotent), or detach finds nothing to do."""
    body = Attachment(pv_name, volume_id, nodes).to_json()
    atomic_write(pv_path(config, pv_name), (wirejson.dumps(body) + "\n").encode(), durable=False)


# ---- mount target -> volume id (unmount gets only the directory) -----------------------------

def target_key(path: str) -> str:
    """A file name for a mount target: readable when short, hashed when it would not fit."""
    flat = path.strip("/").replace("%", "%25").replace("/", "%2F")
    if len(flat) <= 200:
        return flat or "%2F"
    try:
        from _sha256 import sha256
    except ImportError:  # pragma: no cover - CPython always has it
        from hashlib import sha256
    return "sha256-" + sha256(path.encode("utf-8", "surrogateescape")).hexdigest()


def target_path(config: Config, mount_dir: str) -> str:
    return os.path.join(config.targets_dir, target_key(mount_dir) + ".json")


def load_target(config: Config, mount_dir: str) -> Target | None:
    path = target_path(config, mount_dir)
    data = read_json(path)
    target = None if data is None else Target.from_json(data, path)
    if target is not None and target.path != mount_dir:
        return None
    return target


def save_target(config: Config, mount_dir: str, volume_id: str, pod: str = "", *, mode: str = "",
                fs_type: str = "", mount_options: tuple[str, ...] = ()) -> None:
    """Remember which volume a mount dir belongs to, before mounting it, and for the toolkit
    which pod asked for it ("namespace/name" from the kubelet's options) and how it is mounted
    (mode "ro" or "rw", fs type, the volume's mount options): what repair needs to mount it
    again exactly as it was.

    Not fsynced: it only has to outlive a killed call, and a killed process loses nothing in
    the page cache; after a power loss nothing is mounted, so a lost entry asks for no work.
    """
    target = Target(mount_dir, volume_id)
    if pod:
        target.pod = pod
    if mode:
        target.mode, target.fs_type, target.mount_options = mode, fs_type, list(mount_options)
    atomic_write(target_path(config, mount_dir), (wirejson.dumps(target.to_json()) + "\n").encode(),
                 durable=False)


def remove_target(config: Config, mount_dir: str) -> bool:
    return remove(target_path(config, mount_dir))


# ---- locks ---------------------------------------------------------------------------------

HOLDER_WIDTH = 10  # pids are at most 7 digits (pid_max is at most 2**22)


class VolumeLock:
    """An exclusive flock on one volume, with a bounded wait.

    The descriptor is inherited by the commands its call starts (runner.CallContext.fds), and
    by no other call's, so a mkfs or losetup orphaned by a killed driver keeps the volume
    locked until it exits.

    Re-entrant within one call: a caller that holds a volume's lock (repair acting on a
    finding) may call what takes it again (an operation, a step) without waiting on itself.
    Another call, thread or process waits, as before.
    """

    def __init__(self, config: Config, volume_id: str, wait: float = LOCK_WAIT_SECONDS) -> None:
        self.path = config.lock_path(volume_id)
        self.config = config
        self.volume_id = volume_id
        self.wait = wait
        self.fd: int | None = None
        self.nested = False
        self.context: runner.CallContext | None = None  # the call that holds it

    def __enter__(self) -> VolumeLock:
        self.context = runner.current()
        held = self.context.held
        if self.path in held:
            held[self.path] += 1
            self.nested = True
            return self
        self._acquire()
        held[self.path] = 1
        return self

    def _acquire(self) -> None:
        deadline = time.monotonic() + self.wait
        while True:
            fd = self._open()
            self._lock(fd, deadline)
            # The lock file of a volume that is gone is removed by its last holder (__exit__):
            # a lock taken on a file no longer at the path guards nothing, so take it again.
            try:
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        try:
            # Fixed width, written over the last holder's: no truncate, whose block freeing
            # and reallocation cost each call up to a millisecond.
            os.pwrite(fd, f"{os.getpid():>{HOLDER_WIDTH}}\n".encode(), 0)
        except OSError:
            pass  # the holder's pid only informs a Busy message; a full data root must not fail here
        self.fd = fd
        if self.context is not None:
            self.context.fds.add(fd)

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as error:
            hint = write_hint(error) if error.errno in (errno.ENOSPC, errno.EROFS) else \
                f"remove {self.path} (flexvol recreates it)"
            raise FlexvolError(f"cannot open the lock file of volume {self.volume_id} ({self.path}): "
                               f"{error.strerror}", hint) from None

    def _lock(self, fd: int, deadline: float) -> None:
        import fcntl

        delay = 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_holder(fd)
                    os.close(fd)
                    raise Busy(f"volume {self.volume_id} is busy: {holder} has held its lock "
                               f"for over {self.wait:g}s",
                               "the call will be retried; if it never frees, check that process") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.2)

    def __exit__(self, *exc: object) -> None:
        context = self.context or runner.current()
        if self.path in context.held:
            context.held[self.path] -= 1
            if context.held[self.path]:
                return
            del context.held[self.path]
        if self.fd is not None:
            context.fds.discard(self.fd)
            if self.config is not None and not _volume_exists(self.config, self.volume_id):
                try:
                    os.unlink(self.path)  # still held: a waiter re-checks the path (above)
                except OSError:
                    pass
            os.close(self.fd)
            self.fd = None


def _volume_exists(config: Config, volume_id: str) -> bool:
    return os.path.exists(config.backing_file(volume_id)) or \
        os.path.exists(config.record_path(volume_id))


def _read_holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode().partition("\n")[0].strip()
    except OSError:
        pid = ""
    return f"pid {pid}" if pid.isdigit() else "another call"
