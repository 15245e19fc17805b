"""The operations a front end asks of this node's volumes, named for what the caller wants:
create, mount, unmount, attach, detach, expand, delete (and stage, in staging.py).

Each takes the volume's lock itself, is idempotent (a retry after a kill converges), and owns
its rollback: a failed mount leaves nothing it made behind. Front ends (flex/verbs.py, the
toolkit, the provisioner's agent) translate their input into these calls and never call one
another. `call` is the per-call journal entry (journal.CallInfo): the operation fills in the
target and volume it acted on and appends a note for each thing it did, so the journal says
so also when it fails.
"""

from __future__ import annotations

import os

from flexvol.core import state
from flexvol.core.errors import Refused
from flexvol.core.faults import checkpoint

# The steps' modules are imported where used: each module costs every driver call its loading
# time (README, Performance).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from flexvol.core.config import Config
    from flexvol.core.journal import CallInfo
    from flexvol.core.options import VolumeSpec
    from flexvol.core.undo import Undo


def mount(config: Config, target: str, spec: VolumeSpec, call: CallInfo) -> None:
    """Leave the volume made, formatted and mounted at `target` with the spec's mode."""
    from flexvol.core import kernel, mounting
    from flexvol.core.undo import Undo

    target = mounting.check_target(target, config)
    call.target = target
    call.volume_id = spec.volume_id
    state.ensure_dirs(config)
    if (spec.from_snapshot or spec.from_volume) and not spec.read_only:
        _made_from_source(config, spec, call)
    with state.VolumeLock(config, spec.volume_id):
        here = kernel.mounts_at(target)
        if here:
            owner = mounting.volume_of_mount(config, here[-1])
            if owner != spec.volume_id:
                raise Refused(f"{target} is already a mount point of {here[-1].source}; refusing to "
                              f"mount volume {spec.volume_id} over it")
            if here[-1].read_only != spec.read_only:
                raise Refused(f"volume {spec.volume_id} is already mounted at {target} "
                              f"{'read-only' if here[-1].read_only else 'read-write'}; "
                              f"refusing to change it to {spec.mode}",
                              "unmount it first")
            call.notes.append("already mounted")
            # A call killed between its mount and the fsGroup step left the group to this one.
            if mounting.apply_fs_group(target, spec):
                checkpoint("fsgroup-applied")
            return
        undo = Undo()
        try:
            # Written first so that unmount can find the volume of a half-made mount.
            mounting.remember_target(config, target, spec.volume_id, undo, mode=spec.mode,
                                     fs_type=spec.fs_type, mount_options=spec.mount_options,
                                     pod=f"{spec.pod_namespace}/{spec.pod_name}" if spec.pod_name else "")
            record, device = _ready(config, spec, undo, call, may_create=not spec.read_only)
            _mount_with_group(config, record, device, target, spec, undo)
        except BaseException:
            _rolled_back(undo, call)
            raise
        undo.commit()


def _made_from_source(config: Config, spec: VolumeSpec, call: CallInfo) -> None:
    """A provisioned volume with a data source is made, at its first mount, as a copy of that
    snapshot or volume (restore.create_from takes the locks, and removes what a killed copy
    left); once its file exists it is an ordinary volume and the source is never read again."""
    if os.path.exists(config.backing_file(spec.volume_id)):
        record = state.load_record(config, spec.volume_id)
        if record is None or not record.restoring:
            return
    from flexvol.core import restore

    restore.create_from(config, spec, call, from_snapshot=spec.from_snapshot,
                        from_volume=spec.from_volume)


def _mount_with_group(config: Config, record: state.Record, device: str, target: str,
                      spec: VolumeSpec, undo: Undo) -> None:
    """Mount the ready device at `target` (a failure explained from the record) and give its
    root to the pod's fsGroup: the mount's last steps, also the stage's (staging.py)."""
    from flexvol.core import mounting
    from flexvol.core.errors import CommandFailed

    try:
        mounting.ensure_mounted(device, target, spec, undo, config=config)
    except CommandFailed as error:
        raise mounting.explain_mount_failure(record, device, error) from None
    if mounting.apply_fs_group(target, spec):
        checkpoint("fsgroup-applied")


def _ready(config: Config, spec: VolumeSpec, undo: Undo, call: CallInfo, *, may_create: bool,
           block: bool = False) -> tuple[dict, str]:
    """The volume's file, record and one loop device; a filesystem volume formatted once and
    grown if a growth is unfinished, a raw block volume (`block`) never formatted. Returns the
    record and the device. A volume is one or the other for life: asking for the other is
    refused before anything is formatted or bound."""
    from flexvol.core import backing, formatting, loop

    record, created = backing.ensure_file(config, spec, undo, may_create=may_create)
    if bool(record.block) != block:
        raise Refused(f"volume {spec.volume_id} is a {'raw block' if record.block else 'filesystem'} "
                      f"volume; refusing to use it as a {'raw block' if block else 'filesystem'} volume "
                      "(it is never formatted again, nor exposed otherwise)",
                      "ask for it as it was made")
    backing.check_namespace(config, record, spec)
    backing.remember_pv_name(config, record, spec.pv_name)
    device = loop.ensure_loop(config, record, undo)
    if not block and formatting.ensure_filesystem(config, record, device, spec, created=created):
        call.notes.append(f"formatted {spec.fs_type}")
    call.notes.extend(backing.ensure_reserved(config, record))
    # A growth whose filesystem step failed (online ext4 without CAP_SYS_RESOURCE)
    # is finished offline here, before the first mount of the device.
    if not block and backing.growth_pending(record, os.stat(config.backing_file(spec.volume_id)).st_size):
        from flexvol.core import growth

        grown = growth.finish_growth(config, record, device)
        if grown:
            call.notes.append(grown)
    return record, device


def _rolled_back(undo: Undo, call: CallInfo) -> None:
    undo.rollback()
    call.notes.extend(f"rolled back: {item}" for item in undo.done)
    if undo.errors:
        call.notes.extend(f"rollback failed: {item}" for item in undo.errors)


def unmount(config: Config, target: str, call: CallInfo) -> None:
    """Leave nothing of ours mounted at `target`, its write guard lifted, its record gone and the
    volume's loop device released once no mount uses it. Nothing mounted there is success."""
    from flexvol.core import guard, kernel, mounting
    from flexvol.core.mountdir import NeverMountable

    try:
        target = mounting.check_target(target, config)
    except NeverMountable as error:
        # mount refuses such a path, so nothing of ours is mounted there (docs/flexvolume.md section 5:
        # unmount of what is not mounted succeeds).
        call.notes.append(f"nothing mounted: {error}")
        return
    call.target = target
    here = kernel.mounts_at(target)
    volume_id = None
    if here:
        volume_id = mounting.volume_of_mount(config, here[-1])
        if volume_id is None:
            # A concurrent unmount may have unmounted it and detached its device since we
            # read the mount table (it unmounts first): look again before refusing.
            here = kernel.mounts_at(target)
            if here:
                volume_id = mounting.volume_of_mount(config, here[-1])
                if volume_id is None:
                    raise Refused(f"{target} is mounted from {here[-1].source}, which is not a "
                                  "flexvol volume; refusing to unmount it")
    if not here:
        remembered = state.load_target(config, target)
        volume_id = remembered.volume_id if remembered else None
    if volume_id is None:
        call.notes.append("nothing mounted")
        # A guard whose mount and record are both gone (a record moved aside) must not stop
        # the kubelet from removing the dir it unmounts.
        if not here:
            guard.lift_write_guard(target)
        return
    call.volume_id = volume_id
    with state.VolumeLock(config, volume_id):
        here = kernel.mounts_at(target)
        sources: tuple[str, ...] = ()
        if here and mounting.volume_of_mount(config, here[-1]) == volume_id:
            sources = tuple(mount.source for mount in here)
            mounting.unmount_target(target)
        # The dir was ours (mounted or remembered): lift its write guard so the kubelet can
        # remove it, also when the mount was already gone (after a reboot).
        if guard.lift_write_guard(target):
            checkpoint("guard-lifted")
        _release_loop(config, volume_id, call, also=sources)
        state.remove_target(config, target)
        checkpoint("target-removed")


def attach(config: Config, pv_name: str, volume_id: str, node: str, call: CallInfo) -> None:
    """Remember that the PV `pv_name` (volume `volume_id`) is attached to `node`."""
    call.volume_id = volume_id
    state.ensure_dirs(config)
    with state.VolumeLock(config, volume_id):
        known = state.load_pv(config, pv_name)
        nodes = list(known.nodes) if known and known.volume_id == volume_id else []
        if node not in nodes:
            state.save_pv(config, pv_name, volume_id, [*nodes, node])
            checkpoint("pv-saved")


def is_attached(config: Config, pv_name: str, volume_id: str, node: str) -> bool:
    known = state.load_pv(config, pv_name)
    return bool(known and known.volume_id == volume_id and node in known.nodes)


def detach(config: Config, pv_name: str, node: str, call: CallInfo) -> None:
    """Forget that the PV is attached to `node`; free a loop device nothing mounts."""
    known = state.load_pv(config, pv_name)
    if known is None:
        call.notes.append("not attached")
        return
    volume_id = known.volume_id
    call.volume_id = volume_id
    with state.VolumeLock(config, volume_id):
        known = state.load_pv(config, pv_name)
        nodes = [item for item in (known.nodes if known else []) if item != node]
        if nodes:
            state.save_pv(config, pv_name, volume_id, nodes)
        else:
            state.remove(state.pv_path(config, pv_name))
        checkpoint("pv-forgotten")
        # Where attach runs on the node (kubelet-attached), free a loop device nothing mounts.
        if os.path.exists(config.backing_file(volume_id)):
            _release_loop(config, volume_id, call)


def expand(config: Config, volume_id: str, new_bytes: int, call: CallInfo) -> None:
    """Grow the volume's file, loop device and filesystem to at least `new_bytes`, mounted or
    not; never shrinks, and a repeat is a no-op."""
    from flexvol.core import growth, loop
    from flexvol.core.undo import Undo

    call.volume_id = volume_id
    # Also checked before locking, so that a call for a volume this node never had leaves no
    # lock file behind.
    if not os.path.exists(config.backing_file(volume_id)):
        raise Refused(f"volume {volume_id} does not exist on this node", "nothing to expand")
    state.ensure_dirs(config)
    with state.VolumeLock(config, volume_id):
        record = state.load_record(config, volume_id)
        if record is None or not os.path.exists(config.backing_file(volume_id)):
            raise Refused(f"volume {volume_id} does not exist on this node", "nothing to expand")
        undo = Undo()
        try:
            if growth.grow(config, record, new_bytes, undo):
                call.notes.append(f"grew to {new_bytes}")
        finally:
            # A loop device no mount uses is released again: the one attached only to grow an
            # idle volume, and one a killed call left behind (its retry found it attached).
            loop.release_loop(config, volume_id)


def _release_loop(config: Config, volume_id: str, call: CallInfo, also: tuple[str, ...] = ()) -> None:
    from flexvol.core import loop

    pending: list[str] = []
    held: dict[str, str] = {}
    for device in loop.release_loop(config, volume_id, also=also, pending=pending, held=held):
        call.notes.append(f"detached {device}")
    call.notes.extend(f"detach pending: {device} is held open elsewhere; the kernel set autoclear "
                      "and frees it at the last close" for device in pending)
    call.notes.extend(f"kept {device} attached: held open by {holders}" for device, holders in held.items())


def create(config: Config, spec: VolumeSpec, call: CallInfo, *, created_by: str = "",
           progress: Callable[[int, int], None] | None = None, from_snapshot: str = "",
           from_volume: str = "") -> state.Record:
    """Create and format a new volume ahead of its first mount; return its record.

    Formatting happens on the still-sparse file (formatting.ensure_filesystem): the record then
    says formatted-once, and no mount formats it again. Reserving first would give the file
    blocks, and a file with blocks is never formatted; so a thick volume's blocks are reserved
    after (backing.ensure_reserved). A failure leaves nothing behind.

    With `from_snapshot` or `from_volume` the new volume is a copy of that snapshot (restore)
    or volume (clone) instead of a blank filesystem (restore.create_from).
    """
    from flexvol.core import backing, formatting, loop
    from flexvol.core.undo import Undo

    if from_snapshot or from_volume:
        from flexvol.core import restore

        return restore.create_from(config, spec, call, from_snapshot=from_snapshot,
                                   from_volume=from_volume, created_by=created_by, progress=progress)
    call.volume_id = spec.volume_id
    state.ensure_dirs(config)
    with state.VolumeLock(config, spec.volume_id, wait=10):
        path = config.backing_file(spec.volume_id)
        if os.path.exists(path) or state.load_record(config, spec.volume_id) is not None:
            raise Refused(f"volume {spec.volume_id} already exists",
                          "choose another name, or 'flexvol resize' it")
        undo = Undo()
        try:
            record, created = backing.ensure_file(config, spec, undo, may_create=True)
            if created_by:
                record.created_by = created_by
            state.save_record(config, record)
            device = loop.ensure_loop(config, record, undo)
            if formatting.ensure_filesystem(config, record, device, spec, created=created):
                call.notes.append(f"formatted {spec.fs_type}")
            backing.ensure_reserved(config, record, strict=True, progress=progress)
        except BaseException:
            undo.rollback()
            call.notes.extend(f"rolled back: {item}" for item in undo.done)
            raise
        finally:
            loop.release_loop(config, spec.volume_id)
        undo.commit()
        return state.load_record(config, spec.volume_id) or record


def in_use(config: Config, volume_id: str) -> list[str]:
    """Why a volume may not be deleted now: its loop devices, mounts and attachments."""
    from flexvol.core import kernel, layout

    reasons = []
    path = config.backing_file(volume_id)
    mounts = kernel.read_mounts()
    for device in kernel.loops_of_file(path):
        places = [mount.mount_point for mount in kernel.mounts_of_device(device, mounts)]
        reasons.append(f"mounted at {', '.join(places)}" if places else f"attached as {device}")
    for known in layout.iter_attachments(config):
        if known.volume_id == volume_id and known.nodes:
            reasons.append(f"attached to node(s) {', '.join(known.nodes)} as PV {known.pv_name}")
    return reasons


def delete(config: Config, volume_id: str, call: CallInfo) -> list[str]:
    """Remove a volume that nothing uses: its backing file, record and stale mount targets;
    return the paths removed."""
    from flexvol.core import layout

    call.volume_id = volume_id
    state.ensure_dirs(config)
    with state.VolumeLock(config, volume_id, wait=10):
        path = config.backing_file(volume_id)
        record = state.load_record(config, volume_id)
        if record is None and not os.path.exists(path):
            raise Refused(f"volume {volume_id} does not exist", "see 'flexvol ls'")
        reasons = in_use(config, volume_id)
        if reasons:
            raise Refused(f"volume {volume_id} is in use: {'; '.join(reasons)}",
                          "stop the pods that use it (the kubelet then unmounts it) and try again")
        removed = []
        for target_file, target in layout.iter_targets(config):
            if target.volume_id == volume_id:
                state.remove(target_file)
        if state.remove(path, durable=True):
            removed.append(path)
        if state.remove(config.record_path(volume_id), durable=True):
            removed.append(config.record_path(volume_id))
        call.notes.extend(f"removed {item}" for item in removed)
        return removed
