"""The storage steps on one volume. Each is named for the state it leaves and is idempotent:
observe what the kernel and the record say, do only what is missing, verify, and push an undo
action for whatever it made (see undo.py).

Callers hold the volume's lock (verbs.py) for the whole sequence.
"""

from __future__ import annotations

import os
import stat

from flexvol.core import guard, kernel, state
from flexvol.core.config import Config
from flexvol.core.errors import CommandFailed, FlexvolError, ProbeFailed, Refused
from flexvol.core.faults import checkpoint
from flexvol.core.runner import run

# Imported where used: unmount and detach load this module too, and every module costs each
# driver call its loading time (README, Performance).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from flexvol.core import mountdir
    from flexvol.core.options import VolumeSpec
    from flexvol.core.undo import Undo

LOSETUP_TIMEOUT = 30
MOUNT_TIMEOUT = 120
MKFS_TIMEOUT = 600
GROW_TIMEOUT = 600
LOOP_ATTACH_ATTEMPTS = 5


# ---- mount targets -------------------------------------------------------------------------

def check_target(path: str, config: Config, *, what: str = "mount dir") -> str:
    """The plain path of a mount target (mountdir.check_target): never `/`, the data root, a
    dir in it or a parent of it, a kernel filesystem, or a path through a symlink."""
    from flexvol.core import mountdir

    return mountdir.check_target(path, config, what=what)


def volume_of_mount(config: Config, mount: kernel.Mount) -> str | None:
    """The volume id behind a mount, if it is one of our loop devices."""
    backing = kernel.loop_backing_file(mount.source)
    if backing is None:
        return None
    return config.volume_id_of_backing_file(backing)


# ---- backing file and record ---------------------------------------------------------------

def ensure_file(config: Config, spec: VolumeSpec, undo: Undo, *, may_create: bool) -> dict:
    """Leave the volume's sparse backing file and its record in place; return the record."""
    volume_id = spec.volume_id
    path = config.backing_file(volume_id)
    record = state.load_record(config, volume_id)
    try:
        info: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        info = None
    if info is not None:
        if record is not None and info.st_size < int(record.get("size_bytes") or 0):
            # Someone truncated the file: the filesystem inside now runs past its end.
            raise Refused(
                f"the backing file of volume {volume_id} ({path}) is {info.st_size} bytes, smaller "
                f"than the {record['size_bytes']} it was made or grown to: it was truncated",
                f"restore it from a backup, or extend it back (truncate -s {record['size_bytes']} "
                f"{path}) and check its filesystem before use")
        if record is None:
            # The file outlived its record (a crash between the two writes, or a file put
            # there by hand): adopt it; ensure_filesystem decides from the file itself.
            record = state.new_record(volume_id, info.st_size, spec.fs_type)
            record["adopted"] = True
            state.save_record(config, record)
        return record
    if record is not None and record.get("formatted"):
        orphans = deleted_loops(config, record, volume_id)
        if orphans:
            raise Refused(
                f"the backing file of volume {volume_id} ({path}) was deleted while {orphans[0]} was "
                "attached to it; that loop device now holds the only copy of the data",
                f"copy it back once no pod writes to it (cp --sparse=always {orphans[0]} {path}), "
                "then retry")
        raise Refused(
            f"the backing file of volume {volume_id} ({path}) is missing, but its record says it "
            f"was formatted as {record['formatted'].get('fs_type')}",
            "restore the file, or run 'flexvol delete' to forget the volume")
    if not may_create:
        raise Refused(f"volume {volume_id} does not exist yet and a read-only mount never creates "
                      "or formats one", "mount it read-write once first")
    _check_pool_space(config, spec.size_bytes, volume_id)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            undo.push(f"remove new backing file {path}", lambda: state.remove(path), undo.path_gone(path))
            os.ftruncate(fd, spec.size_bytes)
        finally:
            os.close(fd)
    except OSError as error:
        raise FlexvolError(f"cannot create the backing file of volume {volume_id} ({path}): "
                           f"{error.strerror}", state.write_hint(error)) from None
    checkpoint("file-created")
    created_record = record is None
    record = record or state.new_record(volume_id, spec.size_bytes, spec.fs_type)
    record["size_bytes"] = spec.size_bytes
    record["fs_type"] = spec.fs_type
    # Decided once, here: ensure_reserved reads it on every mount and growth.
    record["allocation"] = spec.allocation
    # Proven blank for ensure_filesystem: this call made the file and it is all holes.
    record["created_blank"] = True
    # Not fsynced: until the formatted-once record is durable, a lost record only means the
    # file is adopted (or re-created) by the next call; nothing of value is in it yet.
    state.save_record(config, record, durable=False)
    if created_record:
        undo.push(f"remove new record of {volume_id}",
                  lambda: state.remove(config.record_path(volume_id)),
                  undo.path_gone(config.record_path(volume_id)))
    checkpoint("record-saved")
    return record


def check_namespace(config: Config, record: dict, spec: VolumeSpec) -> None:
    """Keep a volume to the namespace that first used it (README, Threat model).

    The first mount from a pod (or the provisioner, for the claim's namespace) records the
    owner; a pod of another namespace is refused unless an operator made the volume shareable
    (`flexvol share`). Calls that carry no pod namespace (mountdevice in attach mode, the
    toolkit) cannot be checked here.
    """
    namespace = spec.pod_namespace
    if not namespace:
        return
    owner = record.get("namespace")
    if not owner:
        record["namespace"] = namespace
        _save_cache(config, record)
        return
    if owner != namespace and not record.get("shareable"):
        raise Refused(f"volume {spec.volume_id} belongs to namespace {owner}; refusing to mount it "
                      f"for pod {namespace}/{spec.pod_name or '?'}",
                      f"use a volume of namespace {namespace}, or have an operator run "
                      f"'flexvol share {spec.volume_id}' to let every namespace mount it")


def remember_pv_name(config: Config, record: dict, pv_name: str) -> None:
    """Note which PV (or pod volume) names used this volume, for operators."""
    if pv_name and pv_name not in record.setdefault("pv_names", []):
        record["pv_names"].append(pv_name)
        _save_cache(config, record)


def _add_pool_hint(config: Config, spec: VolumeSpec, error: CommandFailed) -> None:
    """Name the likely cause of a failed command when the pool cannot back the volume: a loop
    device over a sparse file on a full filesystem fails writes with bare I/O errors."""
    try:
        pool = os.statvfs(config.volumes_dir)
    except OSError:
        return
    free = pool.f_bavail * pool.f_frsize
    if not error.hint and free < spec.size_bytes:
        from flexvol.core.quantity import human_bytes

        error.hint = (f"the pool filesystem under {config.volumes_dir} has only {human_bytes(free)} "
                      f"free, too little to back volume {spec.volume_id}: free space there and retry")


def _check_pool_space(config: Config, size: int, volume_id: str) -> None:
    """Refuse a size the pool cannot honour: more than its real free space minus what thin
    volumes were promised and have not written yet, or past the budget (budget.py)."""
    from flexvol.core import budget

    budget.check(config, size, volume_id)


def ensure_reserved(config: Config, record: dict, *, strict: bool = False,
                    progress: Callable[[int, int], None] | None = None) -> list[str]:
    """Leave every block of a thick volume allocated in the pool; notes for the journal.

    Runs after the volume is formatted: the driver formats only a file that holds no blocks.
    Thin volumes: nothing, not even a stat. A volume never fully reserved yet (new, or a call
    killed before it finished) is refused when the pool cannot hold it, and its new file is
    rolled back by the caller; one reserved before that lost blocks since (a `discard` mount
    gives freed blocks back) is mounted anyway, with a note, rather than kept from its pod.
    """
    from flexvol.core.options import THICK

    if record.get("allocation") != THICK:
        return []
    volume_id = record["volume_id"]
    path = config.backing_file(volume_id)
    info = os.stat(path)
    missing = info.st_size - info.st_blocks * 512
    if missing <= 0:
        return []
    strict = strict or not record.get("reserved")
    pool = os.statvfs(path)
    free = pool.f_bavail * pool.f_frsize
    try:
        if missing > free:
            raise _unreservable(volume_id, info.st_size, missing, free)
        reserve_blocks(path, info.st_size, progress)
    except Refused as error:
        if strict:
            raise
        return [f"thick volume {volume_id} is not fully reserved: {error}"]
    checkpoint("blocks-reserved")
    if not record.get("reserved"):
        record["reserved"] = True
        state.save_record(config, record, durable=False)
    if strict:
        return []
    from flexvol.core.quantity import human_bytes

    return [f"reserved {human_bytes(missing)} of thick volume {volume_id} again"]


def _unreservable(volume_id: str, size: int, missing: int, free: int) -> Refused:
    from flexvol.core.quantity import human_bytes

    return Refused(f"thick volume {volume_id} of {human_bytes(size)} needs {human_bytes(missing)} more "
                   f"blocks reserved, but the pool has only {human_bytes(free)} of free space",
                   "free space on the pool filesystem, or make the volume thin")


RESERVE_CHUNK = 64 << 20


def reserve_blocks(path: str, size: int, progress: Callable[[int, int], None] | None = None) -> None:
    """fallocate the whole file in chunks; allocates only the holes, written blocks stay."""
    fd = os.open(path, os.O_WRONLY)
    try:
        done = 0
        while done < size:
            step = min(RESERVE_CHUNK, size - done)
            os.posix_fallocate(fd, done, step)
            done += step
            if progress:
                progress(done, size)
        # No fsync (a few ms per mount): a crash that loses the allocation leaves a file with
        # holes that the next mount reserves again, as it does for the record's "reserved".
    except OSError as error:
        from flexvol.core.quantity import human_bytes

        free = os.statvfs(path)
        raise Refused(f"reserving the blocks of {path} failed: {error.strerror} (the pool has "
                      f"{human_bytes(free.f_bavail * free.f_frsize)} of free space)",
                      "free space on the pool filesystem, or make the volume thin") from None
    finally:
        os.close(fd)


# ---- loop device ---------------------------------------------------------------------------

def loop_candidates(config: Config, record: dict | None, volume_id: str) -> list[str]:
    """The loop devices that may serve the volume's file, without scanning when we can.

    Only flexvol attaches a volume's file, always under its lock, and it records the device
    before binding it. So a recorded device that the kernel shows serving the file is the only
    one: the warm path costs one sysfs read. Otherwise (no record, a record rebuilt or adopted
    without a device, a stale name, or a bind a killed call left half-recorded) /sys/block is
    scanned by backing file, whatever the record says: one backing file never gets a second
    loop device.
    """
    if record is not None and not record.get("loop_attaching"):
        recorded = record.get("loop_device")
        if recorded and _serves(recorded, config.backing_file(volume_id)) == "live":
            return [recorded]
    return kernel.loops_of_file(config.backing_file(volume_id))


def _serves(device: str, path: str) -> str:
    """'live' if `device` serves the file at `path`, 'deleted' if a deleted file once there,
    '' otherwise."""
    backing = kernel.loop_backing_file(device)
    real = os.path.realpath(path)
    if backing == real:
        return "live"
    if backing == real + kernel.DELETED_SUFFIX:
        return "deleted"
    return ""


def find_loop(config: Config, record: dict) -> str | None:
    """The loop device attached to the volume's file as it is now, if any."""
    path = config.backing_file(record["volume_id"])
    # Only a device of the file as it is now: one of a deleted file serves other data.
    for device in loop_candidates(config, record, record["volume_id"]):
        if _serves(device, path) == "live":
            return device
    return None


def deleted_loops(config: Config, record: dict | None, volume_id: str) -> list[str]:
    """Loop devices still attached to a deleted file once at the volume's path."""
    path = config.backing_file(volume_id)
    return [device for device in loop_candidates(config, record, volume_id)
            if _serves(device, path) == "deleted"]


def _save_cache(config: Config, record: dict) -> None:
    # The loop device and PV names in the record only save a scan or inform operators (the
    # kernel is the truth): a full or read-only data root must not fail a call over them.
    try:
        state.save_record(config, record, durable=False)
    except FlexvolError:
        pass


def ensure_loop(config: Config, record: dict, undo: Undo) -> str:
    """Leave exactly one loop device attached to the volume's file; return it."""
    path = config.backing_file(record["volume_id"])
    device = find_loop(config, record)
    if device is None:
        stale = deleted_loops(config, record, record["volume_id"])
        if stale:
            users = [mount.mount_point for mount in kernel.mounts_of_device(stale[0])]
            raise Refused(f"{stale[0]} still serves the deleted former backing file of volume "
                          f"{record['volume_id']} (mounted at {', '.join(users) or 'nothing'}); "
                          f"refusing to attach the new {path} beside it",
                          "unmount every pod of this volume first")
        device = _attach_loop(path, lambda chosen: _record_loop(config, record, chosen))
        undo.push(f"detach {device}", lambda: detach_loop(device), undo.loop_detached(device))
        checkpoint("loop-attached")
    if record.get("loop_device") != device or record.get("loop_attaching"):
        record["loop_device"] = device
        record.pop("loop_attaching", None)
        _save_cache(config, record)
    return device


def _record_loop(config: Config, record: dict, device: str | None) -> None:
    """Record the device about to serve the volume, or (None) that one is being attached.

    Saved before the device is bound, so a call killed at any point leaves a record that leads
    the next call to the device (loop_candidates). Not fsynced: a lost one makes the next call
    attach a second device, which release_loop detaches once nothing mounts it.
    """
    if device is None:
        record["loop_attaching"] = True
    else:
        record["loop_device"] = device
        record.pop("loop_attaching", None)
    state.save_record(config, record, durable=False)


def _attach_loop(path: str, record_device: Callable[[str | None], None]) -> str:
    """Bind `path` to a free loop device, calling record_device before each bind."""
    from flexvol.core import loopdev

    try:
        return loopdev.attach(path, before_bind=record_device)
    except loopdev.Unavailable:
        pass
    except loopdev.RaceLost as error:
        raise CommandFailed(str(error), "retry the call; the kubelet does") from error
    except OSError as error:
        raise CommandFailed(f"attaching {path} to a loop device failed: {error.strerror}",
                            "see `losetup -l` and the kernel log") from error
    # losetup picks the device itself: "attaching" before it and the device after.
    record_device(None)
    device = _losetup_attach(path)
    record_device(device)
    return device


def _losetup_attach(path: str) -> str:
    last_error: CommandFailed | None = None
    for _attempt in range(LOOP_ATTACH_ATTEMPTS):
        try:
            # --find picks a free device; two callers can pick the same one and the loser
            # gets EBUSY, so retry (the allocation race of losetup --find).
            done = run(["losetup", "--find", "--show", "--direct-io=on", path],
                       timeout=LOSETUP_TIMEOUT, what="losetup")
        except CommandFailed as error:
            if "busy" not in error.stderr.lower() and "resource" not in error.stderr.lower():
                raise
            last_error = error
            continue
        device = done.out.strip()
        if not device.startswith("/dev/loop"):
            raise CommandFailed(f"losetup printed no loop device for {path}: {done.out[:200]!r}")
        return device
    assert last_error is not None
    raise last_error


LOOP_RELEASE_WAIT = 5.0


def detach_loop(device: str) -> None:
    """Detach a loop device and wait (bounded) until the kernel has let it go.

    Detaching (LOOP_CLR_FD, as `losetup --detach` does) a device that udev's blkid still holds
    open only marks it autoclear; the kernel clears it at the last close, a moment later.
    Waiting keeps "unmount returned, so the device is gone" true for the kubelet, the toolkit
    and the tests.
    """
    import time

    if kernel.loop_backing_file(device) is None:
        return
    _loop_step("detach", device, "detaching")
    deadline = time.monotonic() + LOOP_RELEASE_WAIT
    delay = 0.001
    while kernel.loop_backing_file(device) is not None and time.monotonic() < deadline:
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _set_loop_capacity(device: str) -> None:
    _loop_step("set_capacity", device, "resizing to its backing file")


def _loop_step(step: str, device: str, doing: str) -> None:
    """loopdev.<step>(device), or `losetup --<step> device` where the ioctls are unavailable."""
    from flexvol.core import loopdev

    try:
        getattr(loopdev, step)(device)
    except loopdev.Unavailable:
        option = "--" + step.replace("_", "-")
        run(["losetup", option, device], timeout=LOSETUP_TIMEOUT, what=f"losetup {option}")
    except OSError as error:
        raise CommandFailed(f"{doing} {device} failed: {error.strerror}",
                            "see `losetup -l` and the kernel log") from error


def release_loop(config: Config, volume_id: str, also: tuple[str, ...] = (),
                 pending: list[str] | None = None) -> list[str]:
    """Detach the volume's loop devices that no mount uses any more; return those the kernel
    let go of (`pending` collects those it only marked autoclear: held open elsewhere).

    A device whose backing file was deleted and not restored holds the only copy of the data:
    it is kept, and Refused says how to copy it back.
    """
    path = config.backing_file(volume_id)
    # A scratch mount outside a running expandfs was left by a killed one (the lock is ours).
    scratch = os.path.join(config.scratch_dir, volume_id)
    if kernel.mounts_at(scratch):
        release_mount(scratch)
        os.rmdir(scratch)
    detached = []
    kept = []
    mounts = kernel.read_mounts()
    try:
        record = state.load_record(config, volume_id)
    except FlexvolError:
        record = None  # unreadable: fall back to a scan, never block an unmount on it
    # `also`: devices the caller just saw serving the volume (the source of a mount it removed).
    for device in dict.fromkeys([*loop_candidates(config, record, volume_id), *also]):
        serves = _serves(device, path)
        if not serves or kernel.mounts_of_device(device, mounts):
            continue
        # A device of a deleted file holds the only copy of its data, whatever file sits at
        # the path now (an older copy put back by hand): it goes only once the file there
        # holds the same bytes (the copy back that the refusal asks for).
        if serves == "deleted" and not _same_content(device, path):
            kept.append(device)
            continue
        detach_loop(device)
        # Said only once sysfs shows it gone: a device still held open (udev's blkid, a
        # process) only got autoclear, and the kernel lets it go at the last close.
        if kernel.loop_backing_file(device) is None:
            detached.append(device)
        elif pending is not None:
            pending.append(device)
        checkpoint("loop-detached")
    # The record's loop_device is left as it is: find_loop checks it against sysfs before
    # trusting it, so a stale name costs one read, while rewriting the record costs a write.
    if kept:
        raise Refused(f"kept {kept[0]} attached: the backing file of volume {volume_id} ({path}) was "
                      "deleted while attached, and the loop device holds the only copy of its data"
                      + (" (the file now at that path holds other data)" if os.path.exists(path) else ""),
                      f"copy it back (cp --sparse=always {kept[0]} {path}), then retry")
    return detached


COMPARE_CHUNK = 1 << 20


def _same_content(device: str, path: str) -> bool:
    """True if the file at `path` holds exactly the bytes of `device` (both read in full).

    Reached only on the rare path of a device whose backing file was deleted; any doubt
    (unreadable, different size) keeps the device.
    """
    try:
        with open(device, "rb", buffering=0) as left, open(path, "rb", buffering=0) as right:
            if os.fstat(right.fileno()).st_size != (kernel.block_size_bytes(device) or -1):
                return False
            while True:
                chunk = left.read(COMPARE_CHUNK)
                if chunk != right.read(COMPARE_CHUNK):
                    return False
                if not chunk:
                    return True
    except OSError:
        return False


# ---- filesystem ----------------------------------------------------------------------------

def ensure_filesystem(config: Config, record: dict, device: str, spec: VolumeSpec) -> bool:
    """Leave the volume formatted as spec.fs_type; format only a device proven blank.

    Returns True when mkfs ran. Never formats a volume that was formatted before, that
    probes as anything, or whose file was written to (DESIGN.md, Unknown is not blank).
    """
    volume_id = record["volume_id"]
    formatted = record.get("formatted")
    if formatted:
        if formatted.get("fs_type") != spec.fs_type:
            raise _wrong_type(volume_id, formatted.get("fs_type", "?"), spec.fs_type)
        return False
    interrupted = record.get("mkfs_started")
    # A file this very call created (O_EXCL, then ftruncate: only holes) needs no probe.
    fresh = record.pop("created_blank", False) and os.stat(config.backing_file(volume_id)).st_blocks == 0
    found = kernel.Probe(blank=True) if fresh else kernel.probe(device)
    if not found.blank:
        if found.fs_type == spec.fs_type and not interrupted:
            # Formatted before the record could say so (or by hand): remember, do not redo.
            _remember_formatted(config, record, found)
            return False
        if not (interrupted and interrupted.get("fs_type") == spec.fs_type):
            raise _wrong_type(volume_id, found.fs_type, spec.fs_type)
    if spec.read_only:
        raise Refused(f"volume {volume_id} has no filesystem yet and a read-only mount never formats",
                      "mount it read-write once first")
    path = config.backing_file(volume_id)
    if not interrupted and os.stat(path).st_blocks != 0:
        raise ProbeFailed(
            f"volume {volume_id} shows no filesystem signature but its backing file {path} holds "
            "written blocks; refusing to format it",
            "inspect the file by hand (blkid -p, file -s); flexvol formats only never-written files")
    record["mkfs_started"] = {"fs_type": spec.fs_type, "at": state.now()}
    # Not fsynced either: if it is lost, nothing was mounted yet, so a retry that formats the
    # file again loses nothing. The formatted record below is the one that must survive.
    state.save_record(config, record, durable=False)
    checkpoint("mkfs-intent-saved")
    from flexvol.core.filesystems import FILESYSTEMS
    from flexvol.core.superblock import read_identity

    filesystem = FILESYSTEMS[spec.fs_type]
    # --force only to finish our own mkfs that a killed call left half-done.
    try:
        run(filesystem.mkfs_argv(device, force=bool(interrupted)), timeout=MKFS_TIMEOUT,
            what=f"mkfs.{spec.fs_type}")
    except CommandFailed as error:
        _add_pool_hint(config, spec, error)
        raise
    checkpoint("mkfs-done")
    identity = read_identity(device)
    if identity:
        made = kernel.Probe(blank=False, fs_type=identity[0], uuid=identity[1])
    else:
        made = kernel.probe(device)
    if made.fs_type != spec.fs_type:
        raise CommandFailed(f"mkfs.{spec.fs_type} on {device} left {made.fs_type or 'no filesystem'}")
    _remember_formatted(config, record, made)
    checkpoint("formatted-saved")
    return True


def _remember_formatted(config: Config, record: dict, found: kernel.Probe) -> None:
    record["formatted"] = {"fs_type": found.fs_type, "uuid": found.uuid, "at": state.now()}
    record["mkfs_started"] = None
    state.save_record(config, record)


def _wrong_type(volume_id: str, found: str, wanted: str) -> Refused:
    article = "an" if found[:1] in ("a", "e", "i", "o", "u", "x") else "a"
    return Refused(f"volume {volume_id} already holds {article} {found} filesystem; refusing to format it "
                   f"as {wanted}", f"set fsType to {found} or use another volumeID")


# ---- mounts --------------------------------------------------------------------------------

def ensure_mounted(device: str, target: str, spec: VolumeSpec, undo: Undo, *,
                   config: Config | None = None, create: bool = True) -> bool:
    """Leave `device` mounted at `target` with the spec's mode. Returns True if it mounted.

    The dir is opened without following symlinks and the mount made onto that open dir
    (mountdir.py); with `config`, a dir of the data root is refused however it is reached.
    Without `create`, a missing dir is refused instead of made.
    """
    from flexvol.core import mountdir

    mounts = kernel.read_mounts()
    here = kernel.mounts_at(target, mounts)
    if here and here[-1].source == device:
        return False
    for other in kernel.mounts_of_device(device, mounts):
        if other.read_only != spec.read_only:
            have = "read-only" if other.read_only else "read-write"
            raise Refused(f"volume {spec.volume_id} is mounted {have} at {other.mount_point}; "
                          f"refusing a {spec.mode} mount beside it",
                          "use the same readOnly setting for every pod of this volume")
    forbidden = mountdir.data_root_ids(config) if config is not None else frozenset()
    opened = mountdir.open_dir(target, create=create, undo=undo, forbidden=forbidden)
    if opened is None:
        raise Refused(f"{target} does not exist; not made again", "nothing to mount onto")
    if here or opened.covered():
        raise Refused(f"{target} is already a mount point; refusing to mount volume "
                      f"{spec.volume_id} over it")
    if guard.set_immutable(opened.fd, target, True):
        undo.push(f"lift write guard of {target}",
                  lambda: guard.set_immutable(opened.fd, target, False),
                  lambda: "still immutable" if guard.is_immutable_fd(opened.fd) else "")
        checkpoint("guard-set")
    from flexvol.core.filesystems import BASE_MOUNT_OPTIONS

    options = [*BASE_MOUNT_OPTIONS, *spec.mount_options, spec.mode]
    # -w: without it mount(8) silently falls back to read-only when the device is read-only
    # (util-linux), and we would report a rw mount that is not (FLEXVOLUME.md 9).
    # -c: the target is the open dir's /proc/self/fd path, used as it is, never resolved.
    argv = ["mount", "-c", "-t", spec.fs_type, "-o", ",".join(options),
            "-r" if spec.read_only else "-w", device, opened.proc_path]
    run(argv, timeout=MOUNT_TIMEOUT, what="mount", pass_fds=(opened.fd,))
    undo.push(f"unmount {target}", lambda: release_mount_dir(opened),
              lambda: "still mounted" if opened.covered() else "")
    checkpoint("mounted")
    now = kernel.mounts_at(target)
    if not now or now[-1].source != device or now[-1].read_only != spec.read_only:
        raise Refused(f"mount of volume {spec.volume_id} at {target} did not take effect as {spec.mode}")
    return True


def release_mount_dir(opened: mountdir.MountDir) -> int:
    """Unmount what is mounted over an opened mount dir, reached through its open parent (so
    a rename or a symlink swapped into its path cannot redirect it); return how many went."""
    released = 0
    while opened.covered() or kernel.mounts_at(opened.path):
        if released >= 8:
            raise FlexvolError(f"{opened.path} still has mounts stacked on it after 8 unmounts")
        run(["umount", "-c", opened.child_proc_path], timeout=MOUNT_TIMEOUT, what="umount",
            pass_fds=(opened.parent_fd,))
        released += 1
        checkpoint("unmounted")
    return released


def unmount_target(target: str) -> int:
    """Unmount every mount at the mount dir `target` (reached without symlinks)."""
    from flexvol.core import mountdir

    opened = mountdir.open_dir(target, leaf=False)
    if opened is None:
        return 0
    with opened:
        return release_mount_dir(opened)


def explain_mount_failure(record: dict, device: str, error: CommandFailed) -> FlexvolError:
    """Turn a failed mount of a formatted volume into a clear refusal when the device no
    longer holds the filesystem the record remembers (it is never formatted again)."""
    formatted = record.get("formatted") or {}
    try:
        found = kernel.probe(device)
    except FlexvolError:
        return error
    if found.blank or found.fs_type != formatted.get("fs_type") or (
            formatted.get("uuid") and found.uuid and found.uuid != formatted.get("uuid")):
        now = "blank" if found.blank else f"as {found.fs_type} (UUID {found.uuid or '?'})"
        return Refused(
            f"volume {record['volume_id']} was formatted as {formatted.get('fs_type')} "
            f"(UUID {formatted.get('uuid') or '?'}) but now probes {now}; refusing to format or "
            "mount it", f"inspect {device} and the backing file; restore it from a backup")
    return error


def release_mount(target: str) -> int:
    """Unmount `target` until nothing is mounted there; return how many mounts went."""
    released = 0
    while kernel.mounts_at(target):
        if released >= 8:
            raise FlexvolError(f"{target} still has mounts stacked on it after 8 unmounts")
        run(["umount", target], timeout=MOUNT_TIMEOUT, what="umount")
        released += 1
        checkpoint("unmounted")
    return released


def apply_fs_group(target: str, spec: VolumeSpec) -> bool:
    """Give the volume's root directory to the pod's fsGroup, setgid, without a recursive walk.

    New files inherit the group through the setgid bit; the kubelet's recursive chown on every
    mount (kubernetes #68680) is avoided by declaring the fsGroup capability false. The root is
    reached without following symlinks, and only once something is mounted over the dir.
    """
    if spec.fs_group is None or spec.read_only:
        return False
    from flexvol.core import mountdir

    opened = mountdir.open_dir(target, leaf=False)
    if opened is None or not opened.covered():
        raise Refused(f"volume {spec.volume_id} is not mounted at {target}; not changing its group")
    with opened:
        fd = opened.open_visible()
        try:
            info = os.fstat(fd)
            changed = False
            if info.st_gid != spec.fs_group:
                os.fchown(fd, -1, spec.fs_group)
                changed = True
            mode = stat.S_IMODE(info.st_mode)
            wanted = mode | stat.S_ISGID | stat.S_IRWXG
            if mode != wanted:
                os.fchmod(fd, wanted)
                changed = True
        finally:
            os.close(fd)
    return changed


# ---- growth --------------------------------------------------------------------------------

def grow(config: Config, record: dict, spec: VolumeSpec, new_bytes: int, undo: Undo) -> bool:
    """Grow the backing file, the loop device and the filesystem to at least new_bytes.

    Never shrinks; repeating it is a no-op. Returns True if the file grew.
    """
    volume_id = record["volume_id"]
    formatted = record.get("formatted")
    if not formatted:
        raise Refused(f"volume {volume_id} has never been formatted, so there is nothing to grow",
                      "mount it once first")
    path = config.backing_file(volume_id)
    current = os.stat(path).st_size
    grew = False
    if new_bytes > current:
        _check_pool_space(config, new_bytes, volume_id)
        # Flagged before the file grows: whatever step fails or is killed from here on, the
        # record says its filesystem has not caught up (cleared by grow_filesystem).
        mark_growing(config, record, new_bytes)
        os.truncate(path, new_bytes)
        grew = True
        checkpoint("file-grown")
    # A thick volume's new part is reserved, or the growth fails (and a retry reserves it);
    # blocks lost since (a discard mount) are reserved again where the pool allows.
    ensure_reserved(config, record, strict=os.stat(path).st_size > int(record.get("size_bytes") or 0))
    device = ensure_loop(config, record, undo)
    if (kernel.block_size_bytes(device) or 0) < os.stat(path).st_size:
        _set_loop_capacity(device)
        checkpoint("loop-capacity-set")
    grow_filesystem(config, record, device, os.stat(path).st_size)
    return grew


def grow_filesystem(config: Config, record: dict, device: str, size: int) -> None:
    """Grow the volume's filesystem to its device: online when mounted, else offline.

    The record says `growing` from before the filesystem step until it succeeds, so that a
    failure (ext4 online growth needs CAP_SYS_RESOURCE) leaves a volume the toolkit flags and
    the next resize or mount finishes, never a file bigger than its filesystem unnoticed.
    """
    from flexvol.core.filesystems import FILESYSTEMS

    volume_id = record["volume_id"]
    fs_type = record["formatted"]["fs_type"]
    filesystem = FILESYSTEMS[fs_type]
    if record.get("size_bytes") != size or record.get("growing"):
        mark_growing(config, record, size)
    mounted = kernel.mounts_of_device(device)
    try:
        if mounted:
            run(filesystem.grow_argv(device, mounted[0].mount_point), timeout=GROW_TIMEOUT,
                what=f"growing {fs_type}")
        elif filesystem.grow_needs_mount:
            scratch = os.path.join(config.scratch_dir, volume_id)
            os.makedirs(scratch, 0o700, exist_ok=True)
            run(["mount", "-t", fs_type, "-o", "nosuid,nodev,noexec", device, scratch],
                timeout=MOUNT_TIMEOUT, what="mount")
            checkpoint("scratch-mounted")
            try:
                run(filesystem.grow_argv(device, scratch), timeout=GROW_TIMEOUT,
                    what=f"growing {fs_type}")
            finally:
                release_mount(scratch)
                os.rmdir(scratch)
        else:
            if filesystem.offline_check:
                run([part.format(device=device) for part in filesystem.offline_check],
                    timeout=GROW_TIMEOUT, ok=(0, 1), what="fsck before growing")
            run(filesystem.grow_argv(device, ""), timeout=GROW_TIMEOUT, what=f"growing {fs_type}")
    except CommandFailed as error:
        # The tool's last line says why (resize2fs: Permission denied to resize filesystem).
        lines = [line.strip() for line in error.stderr.splitlines() if line.strip()]
        mark_growing(config, record, size, (lines[-1] if lines else error.message)[-500:])
        raise _growth_failed(record, size, bool(mounted), error) from error
    checkpoint("fs-grown")
    if record.get("size_bytes") != size or "growing" in record:
        record["size_bytes"] = size
        record.pop("growing", None)
        state.save_record(config, record)


def mark_growing(config: Config, record: dict, size: int, error: str = "") -> None:
    """Record that the volume's file is (about to be) `size` while its filesystem is not yet."""
    growing = record.get("growing") or {}
    record["growing"] = {"to": size, "since": growing.get("since") or state.now(),
                         "error": error or growing.get("error", "")}
    state.save_record(config, record)


def growth_pending(record: dict | None, file_size: int | None) -> dict | None:
    """The record's `growing` flag, or one inferred for a formatted volume whose file is bigger
    than the size its record says (grown before the flag existed, or by hand)."""
    if not record:
        return None
    if record.get("growing"):
        return record["growing"]
    recorded = int(record.get("size_bytes") or 0)
    if record.get("formatted") and file_size and recorded and file_size > recorded:
        return {"to": file_size, "since": "", "error": ""}
    return None


def _growth_failed(record: dict, size: int, online: bool, error: CommandFailed) -> FlexvolError:
    """What happened and what to do, when the file and device grew but the filesystem did not."""
    from flexvol.core.quantity import format_bytes

    volume_id = record["volume_id"]
    fs_type = record["formatted"]["fs_type"]
    was = format_bytes(int(record.get("size_bytes") or 0))
    happened = (f"volume {volume_id}: its backing file and loop device now hold {format_bytes(size)}, "
                f"but growing its {fs_type} filesystem {'online' if online else 'offline'} failed, so "
                f"the filesystem is still {was}: {record['growing']['error']}")
    if online and fs_type.startswith("ext"):
        hint = ("grow it offline: stop the pods using it (or unmount it), then run "
                f"'flexvol resize {volume_id} {format_bytes(size)}' (the next mount finishes it too); "
                "or give the node CAP_SYS_RESOURCE, which online ext4 growth needs "
                "(see 'flexvol doctor')")
    else:
        hint = (f"retry with 'flexvol resize {volume_id} {format_bytes(size)}' once the cause is "
                "fixed; the volume stays flagged as growing until then")
    return CommandFailed(happened, hint, argv=error.argv, code=error.code, stderr=error.stderr)


def finish_growth(config: Config, record: dict, device: str) -> str:
    """Before a mount: grow the filesystem of a volume flagged `growing` offline, while nothing
    mounts it. Returns a note for the journal ("" when there was nothing to do)."""
    size = os.stat(config.backing_file(record["volume_id"])).st_size
    if not growth_pending(record, size) or kernel.mounts_of_device(device):
        return ""
    try:
        grow_filesystem(config, record, device, size)
    except CommandFailed as error:
        # The filesystem is intact at its old size: mount it, and leave the flag for later.
        return f"filesystem growth still unfinished: {error.message}"
    from flexvol.core.quantity import format_bytes

    return f"finished growing the filesystem to {format_bytes(size)}"
