"""Checks of growth and ownership: expandfs and fsGroup (docs/flexvolume.md sections 4, 7, 10)."""

from __future__ import annotations

import os
import shutil

from flexvol.sanity.caller import MINIMAL_PATH
from flexvol.sanity.context import SIZE_KEY, SIZE_PLACEHOLDER, Context, MiB
from flexvol.sanity.kubelet import CheckFailed, expect_ok
from flexvol.sanity.node import mounts_at
from flexvol.sanity.observe import read_payload, run_with_teardown, write_payload


def check_expandfs(ctx: Context) -> str | None:
    fs_type, size = expand_fs_type(ctx)
    volume = ctx.volume(fs_type=fs_type, size_bytes=size)
    kubelet = ctx.kubelet()
    old = volume.size_bytes or size
    new = old + 32 * MiB

    def body() -> None:
        path = kubelet.setup(volume, ctx.pod())
        data = write_payload(path)
        before = _fs_bytes(path)
        args = (kubelet.base(volume), volume.device, path, str(new), str(old))
        call = None
        for attempt in range(ctx.repeat):
            call = expect_ok(ctx.caller.call("expandfs", *args), f"expandfs (call {attempt + 1})")
            grown = _fs_bytes(path)
            if grown <= before:
                raise CheckFailed(f"expandfs answered Success but the filesystem at {path} did not grow "
                                  f"({before} bytes before, {grown} after)", call)
            device = mounts_at(path)[-1].source
            size = _block_device_bytes(device)
            if size is not None and size < new:
                raise CheckFailed(f"after expandfs the device {device} holds {size} bytes, less than the "
                                  f"{new} asked for", call)
        if read_payload(path) != data:
            raise CheckFailed("data written before expandfs is gone", call)
        kubelet.teardown(volume)

    run_with_teardown(ctx, [volume], body)
    if fs_type != "ext4" and not ctx.pinned_fs_type():
        return f"checked with {fs_type}: without CAP_SYS_RESOURCE here, ext4 cannot grow online"
    return None


CAP_SYS_RESOURCE = 24
XFS_MIN_BYTES = 320 * MiB


def expand_fs_type(ctx: Context) -> tuple[str, int]:
    """The filesystem and size the expandfs check uses: the options' fsType if they pin one,
    else ext4 where it grows online (CAP_SYS_RESOURCE, ext4_resize_begin) and xfs where not;
    the size at least the filesystem's minimum (xfsprogs refuses below about 300 MB)."""
    from flexvol.core.filesystems import FILESYSTEMS

    fs_type = ctx.pinned_fs_type()
    if not fs_type:
        online = has_capability(CAP_SYS_RESOURCE) or not shutil.which("mkfs.xfs", path=MINIMAL_PATH)
        fs_type = "ext4" if online else "xfs"
    known = FILESYSTEMS.get(fs_type)
    least = max(known.min_bytes, XFS_MIN_BYTES if fs_type == "xfs" else 0) if known else 0
    return fs_type, max(ctx.fixed_size() or ctx.size_bytes, least)


def has_capability(bit: int) -> bool:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> bit & 1)
    except (OSError, ValueError, IndexError):
        pass
    return True


def needs_resize(ctx: Context) -> str:
    """Why expandfs cannot be checked here, so that the check never fails over its own choices."""
    if not ctx.capability("requiresFSResize", True):
        return "the driver declares requiresFSResize false, so the kubelet never calls expandfs"
    pinned = ctx.pinned_fs_type()
    online_ext = has_capability(CAP_SYS_RESOURCE)
    if pinned.startswith("ext") and not online_ext:
        return (f"the options pin fsType {pinned}, and this machine lacks CAP_SYS_RESOURCE, without "
                "which no mounted ext filesystem can grow")
    if not pinned and not online_ext and not shutil.which("mkfs.xfs", path=MINIMAL_PATH):
        return "this machine lacks CAP_SYS_RESOURCE (no online ext4 growth) and mkfs.xfs"
    fs_type, size = expand_fs_type(ctx)
    text = ctx.options.get(SIZE_KEY, "")
    if text and SIZE_PLACEHOLDER not in text and ctx.fixed_size() is None and size > ctx.size_bytes:
        return (f"the options fix size {ctx.options[SIZE_KEY]!r}, which the checker cannot read to make "
                f"sure {fs_type} fits (at least {size // MiB}Mi); use \"{SIZE_PLACEHOLDER}\" or a quantity")
    return ""


def _fs_bytes(path: str) -> int:
    stats = os.statvfs(path)
    return stats.f_blocks * stats.f_frsize


def _block_device_bytes(device: str) -> int | None:
    try:
        with open(f"/sys/class/block/{os.path.basename(device)}/size") as handle:
            return int(handle.read()) * 512
    except (OSError, ValueError):
        return None


def check_fsgroup(ctx: Context) -> None:
    volumes = [ctx.volume(), ctx.volume()]
    kubelet = ctx.kubelet()

    def body() -> None:
        for volume, key, gid in ((volumes[0], "kubernetes.io/mounterArgs.FsGroup", 4321),
                                 (volumes[1], "kubernetes.io/fsGroup", 4322)):
            path = kubelet.setup(volume, ctx.pod(), {key: str(gid)})
            got = os.stat(path).st_gid
            if got != gid:
                raise CheckFailed(f"with {key}={gid} and capability fsGroup false, the volume root {path} "
                                  f"belongs to group {got}; the driver must apply the fsGroup itself",
                                  ctx.caller.calls[-1])
            kubelet.teardown(volume)

    run_with_teardown(ctx, volumes, body)


def needs_own_fsgroup(ctx: Context) -> str:
    if ctx.capability("fsGroup", True):
        return "the driver declares the fsGroup capability true, so the kubelet applies fsGroup itself"
    return ""
