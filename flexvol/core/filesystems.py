"""The one table of supported filesystems: how to make, grow and mount each.

Every `if fs_type == ...` decision lives here as data.
"""

from __future__ import annotations

MiB = 1 << 20


class Filesystem:
    __slots__ = (
        "force_flag",
        "grow",
        "grow_needs_mount",
        "min_bytes",
        "mkfs",
        "name",
        "offline_check",
    )

    def __init__(self, name: str, *, mkfs: tuple[str, ...], force_flag: str, min_bytes: int,
                 grow: tuple[str, ...], grow_needs_mount: bool,
                 offline_check: tuple[str, ...] = ()) -> None:
        self.name = name
        # mkfs argv without the device; `force_flag` is added only to finish our own
        # interrupted mkfs (docs/flexvolume.md section 9, step 4).
        self.mkfs = mkfs
        self.force_flag = force_flag
        self.min_bytes = min_bytes
        # grow argv; "{device}" and "{mountpoint}" are filled in.
        self.grow = grow
        self.grow_needs_mount = grow_needs_mount
        # run before an offline grow (resize2fs insists on a freshly checked filesystem)
        self.offline_check = offline_check

    def mkfs_argv(self, device: str, *, force: bool = False) -> list[str]:
        argv = list(self.mkfs)
        if force:
            argv.append(self.force_flag)
        argv.append(device)
        return argv

    def grow_argv(self, device: str, mountpoint: str) -> list[str]:
        return [part.format(device=device, mountpoint=mountpoint) for part in self.grow]


def _ext(name: str) -> Filesystem:
    return Filesystem(
        name,
        # nodiscard: the backing file is sparse already; discarding it is wasted work.
        mkfs=(f"mkfs.{name}", "-q", "-m", "0", "-E", "nodiscard"),
        force_flag="-F",
        min_bytes=1 * MiB,
        grow=("resize2fs", "{device}"),
        grow_needs_mount=False,
        offline_check=("e2fsck", "-f", "-p", "{device}"),
    )


FILESYSTEMS: dict[str, Filesystem] = {
    "ext4": _ext("ext4"),
    "ext3": _ext("ext3"),
    # xfsprogs 6.x refuses filesystems smaller than about 300 MB (docs/flexvolume.md section 9).
    "xfs": Filesystem(
        "xfs",
        mkfs=("mkfs.xfs", "-q", "-K"),
        force_flag="-f",
        min_bytes=300 * MiB,
        grow=("xfs_growfs", "{mountpoint}"),
        grow_needs_mount=True,
    ),
    # mkfs.btrfs (btrfs-progs 6.2) fails below about 110 MiB.
    "btrfs": Filesystem(
        "btrfs",
        mkfs=("mkfs.btrfs", "-q", "-K"),
        force_flag="-f",
        min_bytes=114 * MiB,
        grow=("btrfs", "filesystem", "resize", "max", "{mountpoint}"),
        grow_needs_mount=True,
    ),
}

DEFAULT_FS_TYPE = "ext4"

# Options a volume may ask for in `mountOptions`: none of them widens what a pod can do.
ALLOWED_MOUNT_OPTIONS = frozenset({
    "noatime", "relatime", "nodiratime", "strictatime", "lazytime", "nolazytime",
    "discard", "nodiscard", "sync", "async", "dirsync", "noexec", "nosuid", "nodev",
})
# Always applied: a volume never carries setuid binaries or device nodes into a pod.
BASE_MOUNT_OPTIONS = ("nosuid", "nodev")
