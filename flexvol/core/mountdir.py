"""Mount dirs reached without following symlinks, and mounts made onto the dir that was checked.

A path is a string whose meaning can change between a check and its use: a parent swapped for
a symlink into the data root turns "mount over the pod dir" into "mount over <root>/volumes".
So a mount dir is walked from `/` one component at a time with O_NOFOLLOW (a symlink anywhere
is refused), the dirs are kept open, and the mount is made onto `/proc/self/fd/N` of the
opened dir, as the kubelet's own subpath code does: what is mounted over, guarded and
unmounted is the very dir that was checked, wherever a racing rename moves it.
"""

from __future__ import annotations

import errno
import os
import stat

from flexvol.core.errors import FlexvolError, InvalidInput, Refused

NAME_MAX = 255
PATH_LIMIT = 4000
# Kernel filesystems: a mount dir there is never a pod's (and /proc/self/... names another dir).
KERNEL_TREES = ("proc", "sys", "dev")
WALK_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
LAST_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK



class NeverMountable(InvalidInput):
    """A path that mount always refuses (a '..' component, an overlong name, a non-dir on the
    way): nothing of ours can be mounted there, so unmount has nothing to do."""


TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from flexvol.core.config import Config
    from flexvol.core.undo import Undo


def check_path(path: str, *, what: str = "mount dir") -> str:
    """The plain absolute form of `path`, or a clear refusal of what cannot be a mount dir."""
    if not path:
        raise InvalidInput(f"the {what} argument is empty", f"pass the absolute {what} path")
    if not path.startswith("/"):
        raise InvalidInput(f"the {what} {path[:200]!r} is not an absolute path")
    if "\0" in path or len(path) > PATH_LIMIT:
        raise InvalidInput(f"the {what} is not a usable path (over {PATH_LIMIT} bytes or a NUL byte)")
    parts = [part for part in path.split("/") if part]
    if not parts:
        raise Refused(f"refusing to use {path!r} as a {what}: it is /")
    for part in parts:
        if part in (".", ".."):
            raise NeverMountable(f"the {what} {path[:200]!r} has a '{part}' component",
                               "pass the dir's plain absolute path")
        size = len(part.encode("utf-8", "surrogateescape"))
        if size > NAME_MAX:
            raise NeverMountable(f"the {what} has a path component of {size} bytes; Linux allows at "
                               f"most {NAME_MAX} bytes per name", "use a shorter name")
    if parts[0] in KERNEL_TREES:
        raise Refused(f"refusing to use {path[:200]!r} as a {what}: it lies in /{parts[0]}, a "
                      "kernel filesystem, never a pod's dir")
    return "/" + "/".join(parts)


class MountDir:
    """A mount dir opened by `open_dir`: its parent and itself, held open until closed.

    Closed when the last reference goes (undo actions of one call hold it until the call ends).
    """

    __slots__ = ("fd", "name", "parent_fd", "path")

    def __init__(self, path: str, parent_fd: int, name: str, fd: int) -> None:
        self.path = path
        self.parent_fd = parent_fd
        self.name = name
        # The dir as it was opened: what was visible then (the dir itself before a mount, which
        # then lies beneath any mount made onto /proc/self/fd/<fd>).
        self.fd = fd

    @property
    def proc_path(self) -> str:
        return f"/proc/self/fd/{self.fd}"

    @property
    def child_proc_path(self) -> str:
        """What is visible at the dir's name now (the top mount), reached through the parent."""
        return f"/proc/self/fd/{self.parent_fd}/{self.name}"

    def covered(self) -> bool:
        """True if something is mounted over the dir: its name then shows another filesystem
        than the parent it is in (mountinfo's view by path is checked by the callers too)."""
        try:
            visible = os.stat(self.name, dir_fd=self.parent_fd, follow_symlinks=False)
        except OSError:
            return False
        return visible.st_dev != os.fstat(self.parent_fd).st_dev

    def open_visible(self) -> int:
        """A descriptor of what the name shows now (a mount's root once mounted)."""
        return os.open(self.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                       dir_fd=self.parent_fd)

    def close(self) -> None:
        for fd in (self.fd, self.parent_fd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.fd = self.parent_fd = -1

    def __del__(self) -> None:
        self.close()

    def __enter__(self) -> MountDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_dir(path: str, *, create: bool = False, undo: Undo | None = None,
             forbidden: frozenset[tuple[int, int]] = frozenset(),
             what: str = "mount dir", leaf: bool = True) -> MountDir | None:
    """Open the checked absolute `path` without following any symlink.

    With `create`, missing dirs are made (mode 0750; the last one's removal is pushed on
    `undo`); without it a missing dir gives None. A dir whose (st_dev, st_ino) is in `forbidden`
    (the data root's own dirs, however reached) is refused. Without `leaf` only the parent is
    opened (fd -1): an open descriptor of a mount's root would keep it busy for umount.
    """
    parts = path.strip("/").split("/")
    fd = os.open("/", WALK_FLAGS)
    walked = ""
    try:
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            walked += "/" + part
            if last and not leaf:
                if not _exists_below(fd, part, walked, path, what):
                    return None
                result = MountDir(path, fd, part, -1)
                fd = -1
                return result
            # The dir itself is opened for reading: its flags (the write guard) are set on it.
            flags = LAST_FLAGS if last else WALK_FLAGS
            child = _open_component(fd, part, walked, path, flags, create=create, what=what)
            if child is None:
                return None
            child_fd, made = child
            info = os.fstat(child_fd)
            if (info.st_dev, info.st_ino) in forbidden:
                os.close(child_fd)
                raise Refused(f"refusing to use {path!r} as a {what}: {walked} is a dir of the "
                              "flexvol data root", "mount volumes outside the data root")
            if last:
                if made and undo is not None:
                    undo.push(f"remove directory {path}", _remover(os.dup(fd), part),
                              _gone_check(fd, part))
                result = MountDir(path, fd, part, child_fd)
                fd = -1
                return result
            os.close(fd)
            fd = child_fd
    finally:
        if fd >= 0:
            os.close(fd)
    raise AssertionError("unreachable")  # pragma: no cover


def _exists_below(fd: int, part: str, walked: str, path: str, what: str) -> bool:
    try:
        info = os.stat(part, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    except OSError as error:
        raise _walk_error(error, walked, path, what) from None
    if stat.S_ISLNK(info.st_mode):
        raise _walk_error(OSError(errno.ELOOP, "symlink"), walked, path, what)
    return True


def _open_component(fd: int, part: str, walked: str, path: str, flags: int, *, create: bool,
                    what: str) -> tuple[int, bool] | None:
    """(descriptor, made by us) of one component below `fd`, or None if missing."""
    made = False
    for _attempt in range(2):
        try:
            return os.open(part, flags, dir_fd=fd), made
        except FileNotFoundError:
            if not create:
                return None
        except OSError as error:
            raise _walk_error(error, walked, path, what, lstat=(fd, part)) from None
        try:
            os.mkdir(part, 0o750, dir_fd=fd)
            made = True
        except FileExistsError:
            continue  # made by someone else meanwhile: open what is there now
        except OSError as error:
            raise FlexvolError(f"cannot create {walked}: {error.strerror}") from None
    raise Refused(f"{walked} keeps changing while it is opened; refusing to use it", "retry the call")


def _walk_error(error: OSError, walked: str, path: str, what: str,
                lstat: tuple[int, str] | None = None) -> FlexvolError:
    if error.errno in (errno.ELOOP, errno.ENOTDIR):
        is_link = error.errno == errno.ELOOP
        if lstat is not None:
            try:
                is_link = stat.S_ISLNK(os.lstat(lstat[1], dir_fd=lstat[0]).st_mode)
            except OSError:
                pass
        if is_link:
            return Refused(f"refusing to use {path!r} as a {what}: {walked} is a symlink, and "
                           "flexvol never follows symlinks in a mount dir's path",
                           "pass the real path (a kubelet --root-dir through a symlink: set it to "
                           "the real dir)")
        return NeverMountable(f"the {what} {path!r} cannot be used: {walked} is not a directory")
    if error.errno == errno.ENAMETOOLONG:
        return NeverMountable(f"the {what} has a name longer than {NAME_MAX} bytes")
    return FlexvolError(f"cannot open {walked} (of {what} {path!r}): {error.strerror}")


def _remover(parent_fd: int, name: str) -> Callable[[], None]:
    def remove() -> None:
        try:
            os.rmdir(name, dir_fd=parent_fd)
        finally:
            os.close(parent_fd)
    return remove


def _gone_check(parent_fd: int, name: str) -> Callable[[], str]:
    parent = os.dup(parent_fd)

    def check() -> str:
        try:
            os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return ""
        finally:
            os.close(parent)
        return "still there"
    return check


def data_root_ids(config: Config) -> frozenset[tuple[int, int]]:
    """(st_dev, st_ino) of the data root and its dirs: never a mount dir, by any path."""
    ids = set()
    for path in (config.data_root, config.volumes_dir, config.records_dir, config.targets_dir,
                 config.locks_dir, config.pvs_dir, config.log_dir, config.scratch_dir):
        try:
            info = os.stat(path)
        except OSError:
            continue
        ids.add((info.st_dev, info.st_ino))
    return frozenset(ids)


def check_target(path: str, config: Config, *, what: str = "mount dir") -> str:
    """The plain path of a mount target, refusing one that overlaps the data root (by name or,
    through a bind mount, by identity), a symlink on the way, or a kernel filesystem."""
    plain = check_path(path, what=what)
    root = os.path.realpath(config.data_root)
    if plain == root or plain.startswith(root + "/") or root.startswith(plain + "/"):
        raise Refused(f"refusing to use {path!r} as a {what}: it overlaps the flexvol data root "
                      f"{root}", "mount volumes outside the data root")
    # The part of the path that exists must be reachable without a symlink.
    opened = open_dir(plain, forbidden=data_root_ids(config), what=what)
    if opened is not None:
        opened.close()
    return plain
