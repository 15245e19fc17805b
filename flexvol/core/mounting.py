"""Mount targets: check a target, mount a volume's device onto it, unmount it, give its root to
the pod's fsGroup.

The dir is always reached without following symlinks (mountdir.py). Callers hold the volume's
lock (operations.py) for the whole sequence; every step is idempotent and pushes an undo action
for what it made (undo.py).
"""

from __future__ import annotations

import os
import stat

from flexvol.core import guard, kernel, mountcall, state
from flexvol.core.config import Config
from flexvol.core.errors import CommandFailed, FlexvolError, Refused
from flexvol.core.faults import checkpoint
from flexvol.core.runner import run

# Imported where used: every module costs each driver call its loading time (README,
# Performance).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from flexvol.core import mountdir
    from flexvol.core.options import VolumeSpec
    from flexvol.core.records import Record
    from flexvol.core.undo import Undo

MOUNT_TIMEOUT = 120


def check_target(path: str, config: Config, *, what: str = "mount dir") -> str:
    """The plain path of a mount target (mountdir.check_target): never `/`, the data root, a
    dir in it or a parent of it, a kernel filesystem, or a path through a symlink."""
    from flexvol.core import mountdir

    return mountdir.check_target(path, config, what=what)


def volume_of_mount(config: Config, mount: kernel.Mount) -> str | None:
    """The volume id behind a mount, if it is one of our loop devices (its filesystem, or its
    device node bound onto a file: a raw block volume)."""
    backing = kernel.loop_backing_file(kernel.device_of_mount(mount))
    if backing is None:
        return None
    return config.volume_id_of_backing_file(backing)


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
    # (util-linux), and we would report a rw mount that is not (docs/flexvolume.md section 9).
    # -c: the target is the open dir's /proc/self/fd path, used as it is, never resolved.
    argv = ["mount", "-c", "-t", spec.fs_type, "-o", ",".join(options),
            "-r" if spec.read_only else "-w", device, opened.proc_path]
    flags = mountcall.flags_of(options)
    if flags is None:
        run(argv, timeout=MOUNT_TIMEOUT, what="mount", pass_fds=(opened.fd,))
    else:
        # mount(2) in-process, mount(8) if that fails (mountcall.py).
        flags |= mountcall.MS_RDONLY if spec.read_only else 0
        mountcall.mount(device, opened.proc_path, spec.fs_type, flags, argv, timeout=MOUNT_TIMEOUT,
                        pass_fds=(opened.fd,))
    undo.push(f"unmount {target}", lambda: release_mount_dir(opened),
              lambda: "still mounted" if opened.covered() else "")
    checkpoint("mounted")
    now = kernel.mounts_at(target)
    if not now or now[-1].source != device or now[-1].read_only != spec.read_only:
        raise Refused(f"mount of volume {spec.volume_id} at {target} did not take effect as {spec.mode}")
    return True


def release_mount_dir(opened: mountdir.MountDir, *, step: str = "unmounted",
                      stacked: type[FlexvolError] = FlexvolError) -> int:
    """Unmount what is mounted over an opened mount dir (or a device file bound onto), reached
    through its open parent (so a rename or a symlink swapped into its path cannot redirect
    it); return how many went. `step` names the checkpoint after each unmount, `stacked` the
    error for a pile of mounts that does not end."""
    released = 0
    while opened.covered() or kernel.mounts_at(opened.path):
        if released >= 8:
            raise stacked(f"{opened.path} still has mounts stacked on it after 8 unmounts")
        mountcall.umount(opened.child_proc_path, ["umount", "-c", opened.child_proc_path],
                         timeout=MOUNT_TIMEOUT, pass_fds=(opened.parent_fd,))
        released += 1
        checkpoint(step)
    return released


def unmount_target(target: str) -> int:
    """Unmount every mount at the mount dir `target` (reached without symlinks)."""
    from flexvol.core import mountdir

    opened = mountdir.open_dir(target, leaf=False)
    if opened is None:
        return 0
    with opened:
        return release_mount_dir(opened)


def explain_mount_failure(record: Record, device: str, error: CommandFailed) -> FlexvolError:
    """Turn a failed mount of a formatted volume into a clear refusal when the device no
    longer holds the filesystem the record remembers (it is never formatted again)."""
    formatted = record.formatted or {}
    try:
        found = kernel.probe(device)
    except FlexvolError:
        return error
    if found.blank or found.fs_type != formatted.get("fs_type") or (
            formatted.get("uuid") and found.uuid and found.uuid != formatted.get("uuid")):
        now = "blank" if found.blank else f"as {found.fs_type} (UUID {found.uuid or '?'})"
        return Refused(
            f"volume {record.volume_id} was formatted as {formatted.get('fs_type')} "
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
    """Give the volume to the pod's fsGroup: its root directory setgid and group rwx, and, only
    when the root belongs to another group, every file below it too (groupwalk).

    New files inherit the group through the setgid bit, so a remount with the same group walks
    nothing: the kubelet's recursive chown on every mount (kubernetes #68680) is avoided by
    declaring the fsGroup capability false. A pod with a different fsGroup gets the files the
    earlier pods wrote, as the kubelet's own change would give them. The tree is changed before
    the root, so a walk cut short is done again by the next mount. The root is reached without
    following symlinks, and only once something is mounted over the dir.
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
                from flexvol.core.groupwalk import give_tree_to_group

                give_tree_to_group(fd, spec.fs_group)
                checkpoint("fsgroup-tree")
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


def remember_target(config: Config, target: str, volume_id: str, undo: Undo, *, what: str = "mount target",
                    mode: str = "", fs_type: str = "", mount_options: tuple[str, ...] = (),
                    pod: str = "") -> None:
    """Record the dir's volume before anything is made there, so that an unmount (of any front
    end) finds the volume of a half-made mount; forgotten again by the rollback."""
    if state.load_target(config, target) is not None:
        return
    state.save_target(config, target, volume_id, pod, mode=mode, fs_type=fs_type,
                      mount_options=mount_options)
    undo.push(f"forget {what}", lambda: state.remove_target(config, target),
              undo.path_gone(state.target_path(config, target)))
    checkpoint("target-saved")
