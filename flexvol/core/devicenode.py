"""Raw block volumes: a volume's loop device node bind-mounted onto a file, as CSI drivers expose
a block volume to the CO (the staging file, each pod's target file).

The file's parent dir is walked without following symlinks (mountdir.py) and the bind is made
onto the file opened there (/proc/self/fd/N), so what is bound, checked and unbound is the file
that was checked. mountinfo shows such a bind by devtmpfs and the node's path (/loop3), not by
the device: kernel.bound_device_number stats the mount point to tell. Callers hold the volume's
lock and own the Undo.
"""

from __future__ import annotations

import os
import stat

from flexvol.core import kernel, mountdir
from flexvol.core.errors import Refused
from flexvol.core.faults import checkpoint
from flexvol.core.runner import run

TYPE_CHECKING = False
if TYPE_CHECKING:
    from flexvol.core.config import Config
    from flexvol.core.undo import Undo

MOUNT_TIMEOUT = 120
FILE_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


def check_target(path: str, config: Config, *, what: str = "target path") -> str:
    """The plain path of a file to bind a device onto: its parent is checked as a mount dir
    (never the data root, a kernel filesystem or a path through a symlink)."""
    plain = mountdir.check_path(path, what=what)
    parent = os.path.dirname(plain)
    if parent == "/":
        raise Refused(f"refusing to use {path!r} as a {what}: a file directly in /")
    mountdir.check_target(parent, config, what=f"dir of the {what}")
    return plain


def bound_here(target: str, device: str, mounts: list[kernel.Mount] | None = None) -> kernel.Mount | None:
    """The top mount at `target` if it binds `device`'s node, else None."""
    here = kernel.mounts_at(target, mounts)
    name = os.path.basename(device)
    if here and kernel.bound_device_number(here[-1], name) == kernel.device_number(device):
        return here[-1]
    return None


def ensure_bound(device: str, target: str, read_only: bool, undo: Undo, *,
                 config: Config | None = None, what: str = "target path") -> bool:
    """Leave `device`'s node bound onto the file `target` (made if missing, its parent dir not),
    read-only when asked. True if it bound now; Refused if something else is there."""
    here = kernel.mounts_at(target)
    if here:
        if bound_here(target, device) is None:
            raise Refused(f"{target} is already a mount point; refusing to bind {device} onto it")
        return False
    forbidden = mountdir.data_root_ids(config) if config is not None else frozenset()
    parent = mountdir.open_dir(os.path.dirname(target), forbidden=forbidden, what=f"dir of the {what}")
    if parent is None:
        raise Refused(f"the dir of the {what} {target} does not exist", "the CO makes it before the call")
    with parent:
        name = os.path.basename(target)
        fd = _open_file(parent.fd, name, target, undo)
        try:
            opened = mountdir.MountDir(target, os.dup(parent.fd), name, -1)
            # Pushed first: a remount that fails after binding leaves the bind in place.
            undo.push(f"unbind {target}", lambda: _unbind(opened),
                      lambda: "still bound" if opened.covered() else "")
            run(["mount", "-c", "--bind", device, f"/proc/self/fd/{fd}"], timeout=MOUNT_TIMEOUT,
                what="mount", pass_fds=(fd,))
        finally:
            os.close(fd)
    if read_only:
        # A bind's own flag, set by a remount of what the name shows now (the bind); the remount
        # replaces every per-mount flag, so nosuid is given again (never nodev: the bind is a
        # device node). The flag says read-only, but writes through a device node ignore it.
        flags = "remount,bind,ro,nosuid"
        run(["mount", "-c", "-o", flags, opened.child_proc_path], timeout=MOUNT_TIMEOUT,
            what="mount", pass_fds=(opened.parent_fd,))
    checkpoint("device-bound")
    now = bound_here(target, device)
    if now is None or now.read_only != read_only:
        raise Refused(f"the bind of {device} onto {target} did not take effect as "
                      f"{'ro' if read_only else 'rw'}")
    return True


BLKROSET = 0x125D


def set_read_only(device: str, read_only: bool) -> None:
    """Make the block device itself refuse writes (or take them again), as `blockdev --setro`:
    the one read-only that binds every opener of its node."""
    import fcntl
    import sys

    fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, BLKROSET, int(read_only).to_bytes(4, sys.byteorder))
    finally:
        os.close(fd)


def _open_file(parent_fd: int, name: str, target: str, undo: Undo) -> int:
    """An O_PATH descriptor of the regular file `name` in `parent_fd`, made empty if missing
    (its removal pushed on `undo`); a symlink or anything but a regular file is refused."""
    try:
        made = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                       dir_fd=parent_fd)
    except FileExistsError:
        pass
    else:
        os.close(made)
        keep = os.dup(parent_fd)
        undo.push(f"remove file {target}", lambda: _unlink(keep, name, close=True),
                  lambda: "" if _missing(target) else "still there")
        checkpoint("device-file-made")
    try:
        fd = os.open(name, FILE_FLAGS, dir_fd=parent_fd)
    except OSError as error:
        raise Refused(f"cannot open {target}: {error.strerror}",
                      "the target of a block volume is a plain file, never a symlink") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise Refused(f"{target} is not a plain file; refusing to bind a block device onto it")
    return fd


def release(target: str) -> bool:
    """Unbind whatever is bound onto the file `target` and remove the file if it is a plain empty
    one (what ensure_bound made); True if the file is gone. Reached without symlinks."""
    opened = mountdir.open_dir(target, leaf=False, what="target path")
    if opened is None:
        return True
    with opened:
        _unbind(opened)
        try:
            info = os.stat(opened.name, dir_fd=opened.parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return True
        if not stat.S_ISREG(info.st_mode) or info.st_size:
            return False
        _unlink(opened.parent_fd, opened.name)
        checkpoint("device-file-removed")
    return True


def _unbind(opened: mountdir.MountDir) -> None:
    from flexvol.core.mounting import release_mount_dir

    release_mount_dir(opened, step="unbound", stacked=Refused)


def _unlink(parent_fd: int, name: str, *, close: bool = False) -> None:
    try:
        os.unlink(name, dir_fd=parent_fd)
    except FileNotFoundError:
        pass
    finally:
        if close:
            os.close(parent_fd)


def _missing(path: str) -> bool:
    return not os.path.lexists(path)
