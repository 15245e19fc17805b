"""Repair's actions: `apply()` one finding of repair.py.

`apply()` takes the volume's lock, checks that the finding still holds and acts with the core's
own steps, then checks the outcome against the kernel: it says "detached" or "mounted" only
when sysfs and mountinfo show it. Nothing here deletes a backing file or writes to a path that
exists: a loop device of a deleted file is copied to a new file before it is detached. A pod
dir the kubelet let go of is never made again nor mounted.
"""

from __future__ import annotations

import os

from flexvol.core import backing, formatting, growth, guard, kernel, loop, mounting, state
from flexvol.core.config import Config
from flexvol.core.errors import CommandFailed, FlexvolError, ProbeFailed, Refused
from flexvol.core.options import VolumeSpec, check_volume_id
from flexvol.core.undo import Undo
from flexvol.toolkit.inventory import (
    device_openers,
)
from flexvol.toolkit.repair import (
    COPY_CHUNK,
    DELETED_FILE_LOOP,
    FILE_WITHOUT_RECORD,
    LEAKED_LOOP,
    POD_DIR_UNMOUNTED,
    RECORD_WITHOUT_FILE,
    RECOVERY_NAMES,
    STALE_MOUNT,
    STALE_TARGET,
    UNFINISHED_GROWTH,
    Finding,
    Pending,
    free_name,
    has_entries,
    mode_unknown,
    recovery_names,
)


def apply(config: Config, finding: Finding) -> str:
    """Carry out the finding's action under the volume's lock, after checking that the finding
    still holds; return what the kernel and the disk confirm was done.

    Returns "nothing to do: ..." when what the finding was about has gone meanwhile (the kubelet
    let go of a pod dir). Raises Refused when the finding changed so that acting would be wrong
    (nothing done), Pending when the action was taken but the kernel has not finished it,
    FlexvolError when it failed.
    """
    if not finding.action:
        raise Refused(f"{finding.subject}: nothing to apply", finding.detail)
    state.ensure_dirs(config)
    from flexvol.toolkit import snapshot_repair

    if finding.kind in snapshot_repair.KINDS:
        return snapshot_repair.apply(config, finding)
    if finding.kind == STALE_TARGET and not finding.volume_id:
        return _forget_target(config, finding)
    check_volume_id(finding.volume_id)
    with state.VolumeLock(config, finding.volume_id, wait=10):
        return ACTIONS[finding.kind](config, finding)


def _serves_live(config: Config, device: str, volume_id: str) -> str | None:
    """The backing file `device` has now, refusing unless it is the volume's file itself."""
    backing = kernel.loop_backing_file(device)
    if backing is not None and backing != os.path.realpath(config.backing_file(volume_id)):
        raise Refused(f"{device} now serves {backing}; left alone")
    return backing


def _detached_or_pending(device: str, done: str = "") -> str:
    """What the kernel says after a detach of `device`: "detached", or Pending naming who
    still holds it open (the kernel only set autoclear), or a failure."""
    before = f"{done}; " if done else ""
    backing = kernel.loop_backing_file(device)
    if backing is None:
        return f"{before}detached {device}"
    openers = device_openers(device)
    if openers:
        autoclear = kernel._read_sys(f"{kernel.SYS_BLOCK}/{os.path.basename(device)}/loop/autoclear")
        then = ("the kernel set autoclear and detaches it at the last close" if autoclear == "1"
                else "the kernel did not mark it for autoclear")
        raise Pending(f"{before}detach pending: {device} is held open by {', '.join(openers)}; {then}",
                      "stop that user of the device, or run repair again once it has closed it")
    mounts = kernel.mounts_of_device(device)
    if mounts:
        raise Refused(f"{before}{device} kept: it is mounted at {mounts[0].mount_point} now")
    raise FlexvolError(f"{before}{device} is still attached to {backing} after the detach",
                       "see `losetup -l` and the kernel log")


def _detach_leaked(config: Config, finding: Finding) -> str:
    device = finding.subject
    if _serves_live(config, device, finding.volume_id) is None:
        return f"nothing to do: {device} is no longer attached"
    if kernel.mounts_of_device(device):
        raise Refused(f"{device} is mounted now; left alone")
    # The device found, whichever the record names (release_loop trusts the record).
    loop.detach_loop(device)
    return _detached_or_pending(device)


def _recover_deleted(config: Config, finding: Finding) -> str:
    device = finding.subject
    backing = kernel.loop_backing_file(device) or ""
    wanted = os.path.realpath(config.backing_file(finding.volume_id)) + kernel.DELETED_SUFFIX
    if backing != wanted or kernel.mounts_of_device(device):
        raise Refused(f"{device} changed since it was inspected; run repair again")
    destination = copy_to_new_file(config, finding.volume_id, device)
    loop.detach_loop(device)
    return _detached_or_pending(device, f"copied {device} to {destination}")


def copy_to_new_file(config: Config, volume_id: str, device: str) -> str:
    """Copy `device` to the first free recovery name; return its path. Never replaces a file:
    the copy is written to a new hidden file and linked to its name, which fails if the name
    was taken meanwhile (then the next name is tried)."""
    temporary = os.path.join(config.volumes_dir,
                             f".{volume_id}-recovering-{os.path.basename(device)}.{os.getpid()}")
    copy_sparse(device, temporary)
    try:
        for name in recovery_names(volume_id, device):
            if not free_name(config, name, volume_id):
                continue
            destination = config.backing_file(name)
            if _link_new(config, temporary, name, volume_id):
                return destination
    finally:
        state.remove(temporary)
    raise Refused(f"{device} was not copied: every recovery name for volume {volume_id} "
                  f"({recovery_names(volume_id, device)[1]} and {RECOVERY_NAMES - 2} more) is taken",
                  f"copy it by hand to a new file (cp --sparse=always {device} <new file>), then "
                  f"detach it (losetup -d {device})")


def _link_new(config: Config, temporary: str, name: str, volume_id: str) -> bool:
    """Give the copy the name `name` unless a file has it; False if one has. Another volume's
    name is taken under that volume's lock too, so that no mount of it is creating it now (the
    volume's own lock, held by apply, is re-entrant)."""
    destination = config.backing_file(name)
    with state.VolumeLock(config, name, wait=10):
        if not free_name(config, name, volume_id):
            return False
        try:
            os.link(temporary, destination)
        except FileExistsError:
            return False
        except OSError as error:
            raise FlexvolError(f"cannot name the copy {destination}: {error.strerror}",
                               state.write_hint(error)) from None
    state.fsync_dir(config.volumes_dir)
    return True


def copy_sparse(device: str, destination: str) -> None:
    """Copy a block device to a new file (O_EXCL: never an existing one), leaving all-zero
    chunks as holes."""
    source_fd = os.open(device, os.O_RDONLY)
    try:
        try:
            fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise Refused(f"{destination} exists; not written over",
                          "another repair may be copying the same device; run repair again") from None
        try:
            size = 0
            zero = bytes(COPY_CHUNK)
            while chunk := os.read(source_fd, COPY_CHUNK):
                if chunk != zero[:len(chunk)]:
                    os.pwrite(fd, chunk, size)
                size += len(chunk)
            os.ftruncate(fd, size)
            os.fsync(fd)
        except OSError:
            os.close(fd)
            fd = -1
            os.unlink(destination)
            raise
        finally:
            if fd >= 0:
                os.close(fd)
    finally:
        os.close(source_fd)


def _unmount_stale(config: Config, finding: Finding) -> str:
    target = state.load_target(config, finding.subject)
    if target is not None and target.volume_id == finding.volume_id:
        raise Refused(f"{finding.subject} is known to the driver now; left alone")
    here = kernel.mounts_at(finding.subject)
    sources = tuple(mount.source for mount in here)
    if not here:
        return f"nothing to do: {finding.subject} is no longer mounted"
    if any(mounting.volume_of_mount(config, mount) != finding.volume_id for mount in here):
        raise Refused(f"{finding.subject} is mounted from {here[-1].source} now; left alone")
    mounting.unmount_target(finding.subject)
    if kernel.mounts_at(finding.subject):
        raise FlexvolError(f"{finding.subject} is still mounted after the unmount")
    # The dir is nobody's mount now: let the kubelet remove it.
    guard.lift_write_guard(finding.subject)
    loop.release_loop(config, finding.volume_id, also=sources)
    said = [f"unmounted {finding.subject}"]
    for device in dict.fromkeys(sources):
        try:
            said.append(_detached_or_pending(device))
        except Refused as kept:
            said.append(str(kept))  # still mounted elsewhere (a bind): rightly kept
    return "; ".join(said)


def _forget_record(config: Config, finding: Finding) -> str:
    path = config.backing_file(finding.volume_id)
    if os.path.exists(path):
        raise Refused(f"the backing file of {finding.volume_id} exists now; record kept")
    if kernel.loops_of_file(path):
        raise Refused(f"a loop device serves {path} now; record kept")
    record_path = config.record_path(finding.volume_id)
    state.remove(record_path, durable=True)
    if os.path.lexists(record_path):
        raise FlexvolError(f"{record_path} is still there after removing it")
    return f"forgot the record of {finding.volume_id}"


def _adopt_file(config: Config, finding: Finding) -> str:
    if state.load_record(config, finding.volume_id) is not None:
        return "nothing to do: it has a record now"
    path = config.backing_file(finding.volume_id)
    try:
        found = kernel.probe(path)
    except ProbeFailed as error:
        raise Refused(f"{path} was not adopted: {error.message}", error.hint) from None
    record = state.new_record(finding.volume_id, os.stat(path).st_size, found.fs_type or "ext4")
    record.adopted = True
    if found.fs_type:
        # the same memory ensure_filesystem keeps: formatted once, never again
        formatting._remember_formatted(config, record, found)
    else:
        state.save_record(config, record)
    if state.load_record(config, finding.volume_id) is None:
        raise FlexvolError(f"the record of {finding.volume_id} is not there after writing it")
    return f"adopted {path} ({found.fs_type or 'no filesystem'})"


def _finish_growth(config: Config, finding: Finding) -> str:
    """Grow the filesystem of an unmounted volume flagged `growing` offline, as a mount would."""
    record = state.load_record(config, finding.volume_id)
    path = config.backing_file(finding.volume_id)
    if not backing.growth_pending(record, os.stat(path).st_size) or record is None:
        return "nothing to do: its filesystem has grown meanwhile"
    if any(kernel.mounts_of_device(device) for device in kernel.loops_of_file(path)):
        raise Refused(f"{finding.volume_id} is mounted now; left alone", finding.detail)
    undo = Undo()
    try:
        device = loop.ensure_loop(config, record, undo)
        growth.grow_filesystem(config, record, device, os.stat(path).st_size)
    finally:
        loop.release_loop(config, finding.volume_id)
    undo.commit()
    after = state.load_record(config, finding.volume_id)
    if backing.growth_pending(after, os.stat(path).st_size):
        raise FlexvolError(f"{finding.volume_id} is still flagged as growing after growing it")
    return f"grew the filesystem of {finding.volume_id} to {after.size_bytes if after else None} bytes"


def _forget_target(config: Config, finding: Finding) -> str:
    if os.path.lexists(finding.subject):
        raise Refused(f"{finding.subject} exists now; left alone")
    state.remove_target(config, finding.subject)
    if os.path.lexists(state.target_path(config, finding.subject)):
        raise FlexvolError(f"the driver's record of {finding.subject} is still there after removing it")
    return f"forgot {finding.subject}"


def _remount(config: Config, finding: Finding) -> str:
    """Mount the volume again in the kubelet's pod dir, as it was (mode, type, options), with
    the driver's own steps: only while the driver still remembers the mount (the kubelet's
    unmount forgets it, under this same lock) and only onto the dir as it is, never made again."""
    directory = finding.subject
    target = state.load_target(config, directory)
    if target is None or target.volume_id != finding.volume_id:
        return (f"nothing to do: the kubelet unmounted {directory} meanwhile (the driver no longer "
                f"has it as a mount of {finding.volume_id}); not mounted again")
    if not target.mode:
        raise Refused(mode_unknown(directory))
    from flexvol.core import mountdir

    # Reached without following symlinks; never made again if the kubelet removed it.
    opened = mountdir.open_dir(directory)
    if opened is None:
        return f"nothing to do: the kubelet removed {directory}; not made nor mounted again"
    with opened:
        if kernel.mounts_at(directory) or opened.covered():
            raise Refused(f"{directory} is mounted now; left alone")
        if has_entries(directory):
            raise Refused(f"{directory} holds files now; move them aside first")
    device = _mount_again(config, target, directory)
    here = kernel.mounts_at(directory)
    if not here or here[-1].source != device or here[-1].read_only != (target.mode == "ro"):
        raise FlexvolError(f"the mount of {finding.volume_id} at {directory} did not take effect "
                           f"as {target.mode}")
    return f"mounted {finding.volume_id} at {directory} ({target.mode})"


def _mount_again(config: Config, target: state.Target, directory: str) -> str:
    """The driver's own steps, onto the dir as it is (never created); roll back on failure."""
    volume_id = target.volume_id
    record = state.load_record(config, volume_id)
    if record is None:
        raise Refused(f"volume {volume_id} has no record; not mounted again")
    formatted = record.formatted_fs
    if not formatted or formatted != target.fs_type:
        raise Refused(f"volume {volume_id} was mounted as {target.fs_type or '?'} but its record "
                      f"says {formatted or 'never formatted'}; not mounted again")
    spec = VolumeSpec(volume_id, fs_type=formatted, read_only=target.mode == "ro",
                      mount_options=tuple(target.mount_options or ()))
    undo = Undo()
    try:
        record, _created = backing.ensure_file(config, spec, undo, may_create=False)
        device = loop.ensure_loop(config, record, undo)
        try:
            mounting.ensure_mounted(device, directory, spec, undo, config=config, create=False)
        except CommandFailed as error:
            if not os.path.lexists(directory):
                raise Refused(f"{directory} was removed by the kubelet meanwhile; not mounted again") \
                    from None
            raise mounting.explain_mount_failure(record, device, error) from None
    except BaseException as error:
        undo.rollback()
        if undo.errors and isinstance(error, FlexvolError):
            error.message += "; rollback failed: " + "; ".join(undo.errors)
        raise
    undo.commit()
    return device


ACTIONS = {
    LEAKED_LOOP: _detach_leaked,
    DELETED_FILE_LOOP: _recover_deleted,
    STALE_MOUNT: _unmount_stale,
    RECORD_WITHOUT_FILE: _forget_record,
    FILE_WITHOUT_RECORD: _adopt_file,
    STALE_TARGET: _forget_target,
    POD_DIR_UNMOUNTED: _remount,
    UNFINISHED_GROWTH: _finish_growth,
}
