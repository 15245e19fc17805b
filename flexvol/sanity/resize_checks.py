"""Checks of growth and ownership: expandfs and fsGroup (docs/flexvolume.md sections 4, 7, 10)."""

from __future__ import annotations

import os
import shutil

from flexvol.sanity.caller import MINIMAL_PATH
from flexvol.sanity.context import Context, MiB
from flexvol.sanity.kubelet import CheckFailed, expect_ok
from flexvol.sanity.node import mounts_at
from flexvol.sanity.observe import read_payload, run_with_teardown, write_payload


def check_expandfs(ctx: Context) -> str | None:
    fs_type, size = expand_fs_type(ctx)
    volume = ctx.volume(fs_type=fs_type, size_bytes=size)
    kubelet = ctx.kubelet()
    old, new = size, size + 32 * MiB

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
    if fs_type != "ext4":
        return f"checked with {fs_type}: without CAP_SYS_RESOURCE here, ext4 cannot grow online"
    return None


CAP_SYS_RESOURCE = 24
XFS_MIN_BYTES = 320 * MiB


def expand_fs_type(ctx: Context) -> tuple[str, int]:
    """ext4 grows online only with CAP_SYS_RESOURCE (ext4_resize_begin); without it, use xfs."""
    if has_capability(CAP_SYS_RESOURCE) or not shutil.which("mkfs.xfs", path=MINIMAL_PATH):
        return "ext4", ctx.size_bytes
    return "xfs", max(ctx.size_bytes, XFS_MIN_BYTES)


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
    if not ctx.capability("requiresFSResize", True):
        return "the driver declares requiresFSResize false, so the kubelet never calls expandfs"
    if not has_capability(CAP_SYS_RESOURCE) and not shutil.which("mkfs.xfs", path=MINIMAL_PATH):
        return "this machine lacks CAP_SYS_RESOURCE (no online ext4 growth) and mkfs.xfs"
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
