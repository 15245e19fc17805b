"""A volume's loop device: found without a scan when the record allows, attached exactly once,
detached once nothing mounts it, and kept when it holds the only copy of a deleted file.

The kernel's ioctls themselves are loopdev.py. Callers hold the volume's lock (operations.py).
"""

from __future__ import annotations

import os

from flexvol.core import kernel, mounting, state
from flexvol.core.config import Config
from flexvol.core.errors import CommandFailed, FlexvolError, Refused
from flexvol.core.faults import checkpoint
from flexvol.core.runner import run

# Imported where used: every module costs each driver call its loading time (README,
# Performance).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from flexvol.core.undo import Undo

LOSETUP_TIMEOUT = 30
LOOP_ATTACH_ATTEMPTS = 5


def loop_candidates(config: Config, record: state.Record | None, volume_id: str) -> list[str]:
    """The loop devices that may serve the volume's file, without scanning when we can.

    Only flexvol attaches a volume's file, always under its lock, and it records the device
    before binding it. So a recorded device that the kernel shows serving the file is the only
    one: the warm path costs one sysfs read. Otherwise (no record, a record rebuilt or adopted
    without a device, a stale name, or a bind a killed call left half-recorded) /sys/block is
    scanned by backing file, whatever the record says: one backing file never gets a second
    loop device.
    """
    if record is not None and not record.loop_attaching:
        recorded = record.loop_device
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


def find_loop(config: Config, record: state.Record) -> str | None:
    """The loop device attached to the volume's file as it is now, if any."""
    path = config.backing_file(record.volume_id)
    # Only a device of the file as it is now: one of a deleted file serves other data.
    for device in loop_candidates(config, record, record.volume_id):
        if _serves(device, path) == "live":
            return device
    return None


def deleted_loops(config: Config, record: state.Record | None, volume_id: str) -> list[str]:
    """Loop devices still attached to a deleted file once at the volume's path."""
    path = config.backing_file(volume_id)
    return [device for device in loop_candidates(config, record, volume_id)
            if _serves(device, path) == "deleted"]


def save_cache(config: Config, record: state.Record) -> None:
    # The loop device and PV names in the record only save a scan or inform operators (the
    # kernel is the truth): a full or read-only data root must not fail a call over them.
    try:
        state.save_record(config, record, durable=False)
    except FlexvolError:
        pass


def ensure_loop(config: Config, record: state.Record, undo: Undo) -> str:
    """Leave exactly one loop device attached to the volume's file; return it."""
    path = config.backing_file(record.volume_id)
    # One look (a sysfs scan when the record names no live device) serves both questions.
    candidates = loop_candidates(config, record, record.volume_id)
    serving = {device: _serves(device, path) for device in candidates}
    device = next((found for found, how in serving.items() if how == "live"), None)
    if device is None:
        stale = [found for found, how in serving.items() if how == "deleted"]
        if stale:
            users = [mount.mount_point for mount in kernel.mounts_of_device(stale[0])]
            raise Refused(f"{stale[0]} still serves the deleted former backing file of volume "
                          f"{record.volume_id} (mounted at {', '.join(users) or 'nothing'}); "
                          f"refusing to attach the new {path} beside it",
                          "unmount every pod of this volume first")
        device = _attach_loop(path, lambda chosen: _record_loop(config, record, chosen))
        _writable(device)
        undo.push(f"detach {device}", lambda: detach_loop(device), undo.loop_detached(device))
        checkpoint("loop-attached")
    if record.loop_device != device or record.loop_attaching:
        record.loop_device = device
        record.loop_attaching = None
        save_cache(config, record)
    return device


def _record_loop(config: Config, record: state.Record, device: str | None) -> None:
    """Record the device about to serve the volume, or (None) that one is being attached.

    Saved before the device is bound, so a call killed at any point leaves a record that leads
    the next call to the device (loop_candidates). Not fsynced: a lost one makes the next call
    attach a second device, which release_loop detaches once nothing mounts it. Not written
    again when it names this device already (the kernel hands out the lowest free number, most
    often the one the volume had last time): it says the same, a record write saved.
    """
    if device is not None and record.loop_device == device and not record.loop_attaching:
        return
    if device is None:
        record.loop_attaching = True
    else:
        record.loop_device = device
        record.loop_attaching = None
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
# Processes that open every new or changed block device for a moment (udev's probes): a detach
# waits for them instead of keeping the device.
TRANSIENT_OPENERS = ("(systemd-udevd)", "(udev-worker)", "(udevd)", "(blkid)", "(udevadm)")


def detach_loop(device: str) -> str:
    """Detach a loop device and wait (bounded) until the kernel has let it go; return "" when it
    went, or who holds it open: then it is kept bound.

    LOOP_CLR_FD on a device open elsewhere only marks it autoclear, and the kernel lets it go
    at the last close. For a moment's opener (udev's blkid) that is what we want, and waiting
    keeps "unmount returned, so the device is gone" true. For a lasting one (a pod writing to
    a raw block volume through its own device node) it is not: the device would vanish under
    it, and its number, reused for another volume, would hand that pod another volume's data.
    So the autoclear is taken back at once, and only a device whose openers all go within the
    wait is detached.
    """
    import time

    if kernel.loop_backing_file(device) is None:
        return ""
    _writable(device)
    _loop_step("detach", device, "detaching")
    deadline = time.monotonic() + LOOP_RELEASE_WAIT
    delay = 0.001
    while kernel.loop_backing_file(device) is not None:
        if not _keep_bound(device):
            return ""  # its last opener closed it meanwhile
        holders = kernel.open_holders(device)
        lasting = [holder for holder in holders if not holder.endswith(TRANSIENT_OPENERS)]
        if lasting:
            return ", ".join(lasting)
        if time.monotonic() >= deadline:
            _loop_step("detach", device, "detaching")  # left to the kernel's autoclear
            return ""
        time.sleep(delay)  # a moment's opener (or none left): let it close, then ask again
        delay = min(delay * 2, 0.05)
        _loop_step("detach", device, "detaching")
    return ""


def _writable(device: str) -> None:
    """Take back a read-only flag (a raw block volume staged read-only): the kernel keeps it on
    the device number after a detach, and the next volume bound there would be read-only."""
    if kernel.read_only(device):
        from flexvol.core import devicenode

        devicenode.set_read_only(device, False)


def _keep_bound(device: str) -> bool:
    """Clear the autoclear a deferred detach set; False if the device is unbound already."""
    from flexvol.core import loopdev

    try:
        return loopdev.keep(device)
    except loopdev.Unavailable:
        return kernel.loop_backing_file(device) is not None
    except OSError as error:
        raise CommandFailed(f"keeping {device} bound failed: {error.strerror}",
                            "see `losetup -l` and the kernel log") from error


def set_loop_capacity(device: str) -> None:
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
                 pending: list[str] | None = None, held: dict[str, str] | None = None) -> list[str]:
    """Detach the volume's loop devices that nothing uses any more; return those the kernel
    let go of (`pending` collects those it only marked autoclear: a moment's opener such as
    udev's probe). A device still in use is kept: mounted, its node bind-mounted onto a file
    (a published raw block volume), or held open (`held` maps it to its holders).

    A device whose backing file was deleted and not restored holds the only copy of the data:
    it is kept, and Refused says how to copy it back.
    """
    path = config.backing_file(volume_id)
    # A scratch mount outside a running expandfs was left by a killed one (the lock is ours).
    scratch = os.path.join(config.scratch_dir, volume_id)
    # One read of the mount table serves the scratch check and the in-use checks below; it is
    # read again only when a scratch mount was released.
    mounts = kernel.read_mounts()
    if kernel.mounts_at(scratch, mounts):
        mounting.release_mount(scratch)
        os.rmdir(scratch)
        mounts = kernel.read_mounts()
    detached = []
    kept = []
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
        holders = detach_loop(device)
        if holders:
            if held is not None:
                held[device] = holders
            continue
        # Said only once sysfs shows it gone: a device still held open by udev's probe only
        # got autoclear, and the kernel lets it go at the last close.
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
