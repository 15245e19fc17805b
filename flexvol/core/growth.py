"""Growing a volume: its file, its loop device, then its filesystem (online when mounted).

The record says `growing` until the filesystem caught up, so a failed or killed growth is
flagged and finished by the next resize or mount. Callers hold the volume's lock.
"""

from __future__ import annotations

import os

from flexvol.core import backing, kernel, loop, mounting, state
from flexvol.core.config import Config
from flexvol.core.errors import CommandFailed, FlexvolError, Refused
from flexvol.core.faults import checkpoint
from flexvol.core.runner import run

# Imported where used: every module costs each driver call its loading time (README,
# Performance).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from flexvol.core.undo import Undo

GROW_TIMEOUT = 600


def grow(config: Config, record: state.Record, new_bytes: int, undo: Undo) -> bool:
    """Grow the backing file, the loop device and the filesystem to at least new_bytes (a raw
    block volume: its file and loop device only, what its user sees through the device).

    Never shrinks; repeating it is a no-op. Returns True if the file grew.
    """
    volume_id = record.volume_id
    if not record.formatted and not record.block:
        raise Refused(f"volume {volume_id} has never been formatted, so there is nothing to grow",
                      "mount it once first")
    grew = grow_file(config, record, new_bytes)
    path = config.backing_file(volume_id)
    device = loop.ensure_loop(config, record, undo)
    if (kernel.block_size_bytes(device) or 0) < os.stat(path).st_size:
        loop.set_loop_capacity(device)
        checkpoint("loop-capacity-set")
    if record.block:
        # A raw block volume is its file and device: nothing inside to catch up.
        size = os.stat(path).st_size
        if int(record.size_bytes or 0) != size:
            record.size_bytes = size
            state.save_record(config, record)
        return grew
    grow_filesystem(config, record, device, os.stat(path).st_size)
    return grew


def grow_file(config: Config, record: state.Record, new_bytes: int) -> bool:
    """Grow the backing file to at least new_bytes within the pool's budget and reserve a thick
    volume's new part; True if the file grew. A formatted volume is flagged `growing` first."""
    volume_id = record.volume_id
    path = config.backing_file(volume_id)
    current = os.stat(path).st_size
    grew = False
    if new_bytes > current:
        backing.check_pool_space(config, new_bytes, volume_id)
        # Flagged before the file grows: whatever step fails or is killed from here on, the
        # record says its filesystem has not caught up (cleared by grow_filesystem).
        if record.formatted:
            mark_growing(config, record, new_bytes)
        os.truncate(path, new_bytes)
        grew = True
        checkpoint("file-grown")
    # A thick volume's new part is reserved, or the growth fails (and a retry reserves it);
    # blocks lost since (a discard mount) are reserved again where the pool allows.
    backing.ensure_reserved(config, record, strict=os.stat(path).st_size > int(record.size_bytes or 0))
    return grew


def grow_filesystem(config: Config, record: state.Record, device: str, size: int) -> None:
    """Grow the volume's filesystem to its device: online when mounted, else offline.

    The record says `growing` from before the filesystem step until it succeeds, so that a
    failure (ext4 online growth needs CAP_SYS_RESOURCE) leaves a volume the toolkit flags and
    the next resize or mount finishes, never a file bigger than its filesystem unnoticed.
    """
    from flexvol.core.filesystems import FILESYSTEMS

    volume_id = record.volume_id
    fs_type = record.formatted["fs_type"]
    filesystem = FILESYSTEMS[fs_type]
    if record.size_bytes != size or record.growing:
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
                timeout=mounting.MOUNT_TIMEOUT, what="mount")
            checkpoint("scratch-mounted")
            try:
                run(filesystem.grow_argv(device, scratch), timeout=GROW_TIMEOUT,
                    what=f"growing {fs_type}")
            finally:
                mounting.release_mount(scratch)
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
    if record.size_bytes != size or record.growing is not None:
        record.size_bytes = size
        record.growing = None
        state.save_record(config, record)


def mark_growing(config: Config, record: state.Record, size: int, error: str = "") -> None:
    """Record that the volume's file is (about to be) `size` while its filesystem is not yet."""
    growing = record.growing or {}
    record.growing = {"to": size, "since": growing.get("since") or state.now(),
                      "error": error or growing.get("error", "")}
    state.save_record(config, record)


def _growth_failed(record: state.Record, size: int, online: bool, error: CommandFailed) -> FlexvolError:
    """What happened and what to do, when the file and device grew but the filesystem did not."""
    from flexvol.core.quantity import format_bytes

    volume_id = record.volume_id
    fs_type = record.formatted["fs_type"]
    was = format_bytes(int(record.size_bytes or 0))
    happened = (f"volume {volume_id}: its backing file and loop device now hold {format_bytes(size)}, "
                f"but growing its {fs_type} filesystem {'online' if online else 'offline'} failed, so "
                f"the filesystem is still {was}: {record.growing['error']}")
    if online and fs_type.startswith("ext"):
        hint = ("grow it offline: stop the pods using it (or unmount it), then run "
                f"'flexvol resize {volume_id} {format_bytes(size)}' (the next mount finishes it too); "
                "or give the node CAP_SYS_RESOURCE, which online ext4 growth needs "
                "(see 'flexvol doctor')")
    else:
        hint = (f"retry with 'flexvol resize {volume_id} {format_bytes(size)}' once the cause is "
                "fixed; the volume stays flagged as growing until then")
    return CommandFailed(happened, hint, argv=error.argv, code=error.code, stderr=error.stderr)


def finish_growth(config: Config, record: state.Record, device: str) -> str:
    """Before a mount: grow the filesystem of a volume flagged `growing` offline, while nothing
    mounts it. Returns a note for the journal ("" when there was nothing to do)."""
    size = os.stat(config.backing_file(record.volume_id)).st_size
    if not backing.growth_pending(record, size) or kernel.mounts_of_device(device):
        return ""
    try:
        grow_filesystem(config, record, device, size)
    except CommandFailed as error:
        # The filesystem is intact at its old size: mount it, and leave the flag for later.
        return f"filesystem growth still unfinished: {error.message}"
    from flexvol.core.quantity import format_bytes

    return f"finished growing the filesystem to {format_bytes(size)}"
