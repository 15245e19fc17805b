"""The stage operation: an existing volume made ready at a staging path for a front end that
exposes it to pods from there (CSI NodeStageVolume, then NodePublishVolume), filesystem or raw
block. Like every operation (operations.py) it takes the volume's lock, is idempotent and owns
its rollback; the steps before the mount are the mount operation's own (operations._ready).
"""

from __future__ import annotations

from flexvol.core import operations, state
from flexvol.core.errors import Refused

TYPE_CHECKING = False
if TYPE_CHECKING:
    from flexvol.core.config import Config
    from flexvol.core.journal import CallInfo
    from flexvol.core.options import VolumeSpec


def stage(config: Config, target: str, spec: VolumeSpec, call: CallInfo, *, block: bool = False,
          lock_wait: float = state.LOCK_WAIT_SECONDS) -> str:
    """Leave an existing volume staged at `target` for a front end that exposes it from there
    (CSI NodeStageVolume): a filesystem volume formatted once and mounted at the dir `target`
    with the spec's mode; a raw block volume (`block`) never formatted, its loop device's node
    bound onto the file `target` (made here). Returns the loop device."""
    from flexvol.core import devicenode, mounting
    from flexvol.core.undo import Undo

    what = "staging path"
    target = (devicenode.check_target(target, config, what=what) if block
              else mounting.check_target(target, config, what=what))
    call.target = target
    call.volume_id = spec.volume_id
    state.ensure_dirs(config)
    with state.VolumeLock(config, spec.volume_id, wait=lock_wait):
        device = _staged_already(config, target, spec)
        if device:
            call.notes.append("already staged")
            # A retry after a kill between the mount and the group: the group is applied still.
            if not block:
                mounting.apply_fs_group(target, spec)
            return device
        undo = Undo()
        try:
            # Written first so that unstage (and the FlexVolume unmount) find a half-made stage.
            if block:
                mounting.remember_target(config, target, spec.volume_id, undo, what="staging path")
            else:
                mounting.remember_target(config, target, spec.volume_id, undo, what="staging path",
                                         mode=spec.mode, fs_type=spec.fs_type,
                                         mount_options=spec.mount_options)
            record, device = operations._ready(config, spec, undo, call, may_create=False, block=block)
            if block:
                # A read-only bind does not stop writes through a device node; a read-only
                # device does, for every user (a read-only stage has only read-only publishes).
                devicenode.set_read_only(device, spec.read_only)
                devicenode.ensure_bound(device, target, spec.read_only, undo, config=config, what=what)
            else:
                # The pod's fsGroup is CSI's volume_mount_group here.
                operations._mount_with_group(config, record, device, target, spec, undo)
        except BaseException:
            operations._rolled_back(undo, call)
            raise
        undo.commit()
        return device


def _staged_already(config: Config, target: str, spec: VolumeSpec) -> str:
    """The device if the volume is staged at `target` as asked, "" if nothing is there; Refused
    if another mount is, Conflict if the volume is there with the other mode."""
    from flexvol.core import kernel, mounting
    from flexvol.core.errors import Conflict

    here = kernel.mounts_at(target)
    if not here:
        return ""
    if mounting.volume_of_mount(config, here[-1]) != spec.volume_id:
        raise Refused(f"{target} is already a mount point of {kernel.device_of_mount(here[-1])}; "
                      f"refusing to stage volume {spec.volume_id} over it")
    if here[-1].read_only != spec.read_only:
        have = "read-only" if here[-1].read_only else "read-write"
        raise Conflict(f"volume {spec.volume_id} is already staged {have} at {target}",
                       f"unstage it before asking for {spec.mode}")
    return kernel.device_of_mount(here[-1])
