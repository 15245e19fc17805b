"""A new filesystem UUID for a copy, so it mounts beside its source.

xfs refuses to mount a filesystem whose UUID a mounted one has; btrfs would take the copy for
another device of the same filesystem. ext2/3/4 mount duplicates: their UUID is kept (a mount
by UUID then finds either; flexvol mounts by device, so it does not care).

xfs changes its UUID only with a clean log, and a copy of a frozen xfs has a dirty one (freezing
does not write the unmount record): the copy is mounted once privately (nouuid, so beside its
source) to replay its log, then unmounted, before `xfs_admin -U generate`.
"""

from __future__ import annotations

import os

from flexvol.core import kernel
from flexvol.core.errors import FlexvolError
from flexvol.core.faults import checkpoint
from flexvol.core.runner import run

TYPE_CHECKING = False
if TYPE_CHECKING:
    from flexvol.core.config import Config

NEW_UUID: dict[str, tuple[str, ...]] = {
    "xfs": ("xfs_admin", "-U", "generate"),
    "btrfs": ("btrfstune", "-m"),
}
TIMEOUT = 120


def scratch_path(config: Config, volume_id: str) -> str:
    return os.path.join(config.scratch_dir, volume_id)


def give_new_uuid(config: Config, path: str, fs_type: str, volume_id: str, old_uuid: str) -> None:
    """Give the filesystem in file `path` (the copy for `volume_id`) a new UUID where its type
    needs one; refuse when the UUID read back is still `old_uuid`."""
    if fs_type not in NEW_UUID:
        return
    if fs_type == "xfs":
        _replay_log(config, path, volume_id)
    done = run([*NEW_UUID[fs_type], path], timeout=TIMEOUT,
               what=f"giving the copy for {volume_id} a new UUID")
    checkpoint("uuid-changed")
    found = kernel.probe(path)
    if not found.uuid or found.uuid == old_uuid:
        said = (done.err or done.out).strip().splitlines()
        raise FlexvolError(f"the copy for volume {volume_id} kept the UUID of its source ({old_uuid})"
                           + (f": {said[0]}" if said else ""), "check the source with 'flexvol fsck'")


def _replay_log(config: Config, path: str, volume_id: str) -> None:
    scratch = scratch_path(config, volume_id)
    os.makedirs(scratch, 0o700, exist_ok=True)
    run(["mount", "-t", "xfs", "-o", "loop,nouuid,nosuid,nodev,noexec", path, scratch], timeout=TIMEOUT,
        what=f"replaying the log of the copy for {volume_id}")
    checkpoint("log-replay-mounted")
    release_scratch(config, volume_id)


def release_scratch(config: Config, volume_id: str) -> None:
    """Unmount and remove the copy's private mount (also one a killed call left); its loop
    device was made autoclear by mount(8) and goes with the unmount."""
    scratch = scratch_path(config, volume_id)
    if kernel.mounts_at(scratch):
        from flexvol.core import mounting

        mounting.release_mount(scratch)
    try:
        os.rmdir(scratch)
    except FileNotFoundError:
        pass
    except OSError as error:
        raise FlexvolError(f"cannot remove {scratch}: {error.strerror}") from None
