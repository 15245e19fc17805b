"""Give every file of a mounted volume to a new fsGroup, as the kubelet's own ownership change does.

Only called when the volume's root belongs to another group: a pod with a different fsGroup
arrived, so the files the last pods wrote must become this pod's group's to read and write
(the kubelet's OnRootMismatch rule; a remount with the same group walks nothing). Per entry, as
the kubelet's SetVolumeOwnership: the group changed, group read and write added (and owner
read and write), directories also searchable and setgid; symlinks get the group only.

The tree belongs to pods, which may still be changing it: nothing here follows a symlink.
Directories are walked through file descriptors (os.fwalk checks each one is the directory it
listed); each entry's group is changed with fchownat(AT_SYMLINK_NOFOLLOW) and its mode through
an O_PATH descriptor opened with O_NOFOLLOW (chmod of its /proc/self/fd link reaches that inode),
so a name swapped for a symlink meanwhile changes the link, never what it points to. Other
filesystems mounted below are not entered.
"""

from __future__ import annotations

import os
import stat

FILE_BITS = 0o660
DIR_BITS = 0o770 | stat.S_ISGID


def give_tree_to_group(root_fd: int, group: int) -> int:
    """Change every entry below the directory `root_fd` to `group`; returns how many changed."""
    device = os.fstat(root_fd).st_dev
    changed = 0
    for _path, dirs, files, dir_fd in os.fwalk(".", dir_fd=root_fd, follow_symlinks=False):
        for name in list(dirs):
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if info.st_dev != device:  # a filesystem mounted below: not this volume's
                dirs.remove(name)
                continue
            changed += _give(dir_fd, name, group)
        for name in files:
            changed += _give(dir_fd, name, group)
    return changed


def _give(dir_fd: int, name: str, group: int) -> int:
    """1 when the entry `name` in `dir_fd` changed, 0 when it had the group and bits already."""
    try:
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:  # removed by a pod meanwhile
        return 0
    try:
        info = os.fstat(fd)
        changed = info.st_gid != group
        if changed:  # fchownat(AT_SYMLINK_NOFOLLOW): never what a link points to
            os.chown(name, -1, group, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISLNK(info.st_mode):
            return int(changed)
        mode = stat.S_IMODE(info.st_mode)
        wanted = mode | (DIR_BITS if stat.S_ISDIR(info.st_mode) else FILE_BITS)
        if wanted != mode:
            # Through the descriptor: the inode opened above, whatever the name is by now.
            os.chmod(f"/proc/self/fd/{fd}", wanted)
            changed = True
        return int(changed)
    finally:
        os.close(fd)
