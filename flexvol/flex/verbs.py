"""One small function per FlexVolume verb, the table of verbs, and `main`.

The dispatcher is the one place that parses arguments, takes the volume lock, journals the
call and turns errors into replies (DESIGN.md). Argument order follows FLEXVOLUME.md 3.
"""

from __future__ import annotations

import os

from flexvol.core import config as config_module
from flexvol.core.errors import FlexvolError, InvalidInput
from flexvol.core.faults import checkpoint
from flexvol.core.journal import CallInfo
from flexvol.flex import protocol

# Everything else is imported inside the verbs that need it: `init` runs at every plugin
# probe and must stay close to a bare interpreter start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from flexvol.core.config import Config
    from flexvol.core.options import VolumeSpec
    from flexvol.flex.protocol import Reply


def _spec(text: str, call: CallInfo) -> VolumeSpec:
    from flexvol.core.options import parse_spec

    spec = parse_spec(protocol.parse_options(text))
    call.volume_id = spec.volume_id
    call.secrets = len(spec.secrets)
    return spec


def _bytes(text: str, what: str) -> int:
    from flexvol.core.quantity import parse_quantity

    value = parse_quantity(text, what)
    if value <= 0:
        raise InvalidInput(f"{what} must be a positive byte count, got {text[:40]!r}")
    return value


def _device_token(volume_id: str) -> str:
    # attach runs where the controller-manager runs, which holds no backing file and no loop
    # device; the "device" is a stable name the node resolves in mountdevice.
    return f"flexvol:{volume_id}"


def _check_node(node: str) -> str:
    if not node:
        raise InvalidInput("the node name argument is empty")
    return node


# ---- verbs ---------------------------------------------------------------------------------

def do_init(config: Config, args: list[str], call: CallInfo) -> Reply:
    return protocol.success(capabilities={
        "attach": config.attach,
        "selinuxRelabel": True,
        # false: the driver gives the volume root to the fsGroup itself (mounting.apply_fs_group)
        # instead of the kubelet's recursive chown of the whole volume on every mount.
        "fsGroup": False,
        "supportsMetrics": True,
        "requiresFSResize": True,
    })


def do_mount(config: Config, args: list[str], call: CallInfo) -> Reply:
    return _mount_at(config, args[0], _spec(args[1], call), call)


def do_mountdevice(config: Config, args: list[str], call: CallInfo) -> Reply:
    # args: <deviceMountPath> <devicePath> <options>; the device is resolved from volumeID.
    return _mount_at(config, args[0], _spec(args[2], call), call)


def _mount_at(config: Config, target_arg: str, spec: VolumeSpec, call: CallInfo) -> Reply:
    from flexvol.core import backing, formatting, kernel, loop, mounting, state
    from flexvol.core.errors import CommandFailed, Refused
    from flexvol.core.undo import Undo

    target = mounting.check_target(target_arg, config)
    call.target = target
    state.ensure_dirs(config)
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
            return protocol.success()
        undo = Undo()
        try:
            # Written first so that unmount can find the volume of a half-made mount.
            if state.load_target(config, target) is None:
                pod = f"{spec.pod_namespace}/{spec.pod_name}" if spec.pod_name else ""
                state.save_target(config, target, spec.volume_id, pod, mode=spec.mode, fs_type=spec.fs_type,
                                  mount_options=spec.mount_options)
                undo.push("forget mount target", lambda: state.remove_target(config, target),
                           undo.path_gone(state.target_path(config, target)))
                checkpoint("target-saved")
            record = backing.ensure_file(config, spec, undo, may_create=not spec.read_only)
            backing.check_namespace(config, record, spec)
            backing.remember_pv_name(config, record, spec.pv_name)
            device = loop.ensure_loop(config, record, undo)
            if formatting.ensure_filesystem(config, record, device, spec):
                call.notes.append(f"formatted {spec.fs_type}")
            call.notes.extend(backing.ensure_reserved(config, record))
            # A growth whose filesystem step failed (online ext4 without CAP_SYS_RESOURCE)
            # is finished offline here, before the first mount of the device.
            if backing.growth_pending(record, os.stat(config.backing_file(spec.volume_id)).st_size):
                from flexvol.core import growth

                grown = growth.finish_growth(config, record, device)
                if grown:
                    call.notes.append(grown)
            try:
                mounting.ensure_mounted(device, target, spec, undo, config=config)
            except CommandFailed as error:
                raise mounting.explain_mount_failure(record, device, error) from None
            if mounting.apply_fs_group(target, spec):
                checkpoint("fsgroup-applied")
        except BaseException:
            undo.rollback()
            call.notes.extend(f"rolled back: {item}" for item in undo.done)
            if undo.errors:
                call.notes.extend(f"rollback failed: {item}" for item in undo.errors)
            raise
        undo.commit()
    return protocol.success()


def do_unmount(config: Config, args: list[str], call: CallInfo) -> Reply:
    from flexvol.core import guard, kernel, loop, mounting, state
    from flexvol.core.errors import Refused
    from flexvol.core.mountdir import NeverMountable

    try:
        target = mounting.check_target(args[0], config)
    except NeverMountable as error:
        # mount refuses such a path, so nothing of ours is mounted there (FLEXVOLUME.md 5:
        # unmount of what is not mounted succeeds).
        call.notes.append(f"nothing mounted: {error}")
        return protocol.success()
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
        volume_id = remembered["volume_id"] if remembered else None
    if volume_id is None:
        call.notes.append("nothing mounted")
        # A guard whose mount and record are both gone (a record moved aside) must not stop
        # the kubelet from removing the dir it unmounts.
        if not here:
            guard.lift_write_guard(target)
        return protocol.success()
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
        pending: list[str] = []
        for device in loop.release_loop(config, volume_id, also=sources, pending=pending):
            call.notes.append(f"detached {device}")
        call.notes.extend(_pending_notes(pending))
        state.remove_target(config, target)
        checkpoint("target-removed")
    return protocol.success()


def _pending_notes(devices: list[str]) -> list[str]:
    return [f"detach pending: {device} is held open elsewhere; the kernel set autoclear and "
            "frees it at the last close" for device in devices]


def do_attach(config: Config, args: list[str], call: CallInfo) -> Reply:
    from flexvol.core import state
    from flexvol.core.options import check_pv_name
    spec = _spec(args[0], call)
    node = _check_node(args[1])
    pv_name = check_pv_name(spec.pv_name)
    state.ensure_dirs(config)
    with state.VolumeLock(config, spec.volume_id):
        known = state.load_pv(config, pv_name)
        nodes = list(known["nodes"]) if known and known.get("volume_id") == spec.volume_id else []
        if node not in nodes:
            state.save_pv(config, pv_name, spec.volume_id, [*nodes, node])
            checkpoint("pv-saved")
    return protocol.success(device=_device_token(spec.volume_id))


def do_isattached(config: Config, args: list[str], call: CallInfo) -> Reply:
    from flexvol.core import state
    from flexvol.core.options import check_pv_name
    spec = _spec(args[0], call)
    node = _check_node(args[1])
    pv_name = check_pv_name(spec.pv_name)
    known = state.load_pv(config, pv_name)
    attached = bool(known and known.get("volume_id") == spec.volume_id and node in known.get("nodes", []))
    return protocol.success(attached=attached)


def do_detach(config: Config, args: list[str], call: CallInfo) -> Reply:
    from flexvol.core import loop, state
    from flexvol.core.options import check_pv_name

    pv_name = check_pv_name(args[0])
    node = _check_node(args[1])
    known = state.load_pv(config, pv_name)
    if known is None:
        call.notes.append("not attached")
        return protocol.success()
    volume_id = known["volume_id"]
    call.volume_id = volume_id
    with state.VolumeLock(config, volume_id):
        known = state.load_pv(config, pv_name) or {"nodes": []}
        nodes = [item for item in known.get("nodes", []) if item != node]
        if nodes:
            state.save_pv(config, pv_name, volume_id, nodes)
        else:
            state.remove(state.pv_path(config, pv_name))
        checkpoint("pv-forgotten")
        # Where attach runs on the node (kubelet-attached), free a loop device nothing mounts.
        if os.path.exists(config.backing_file(volume_id)):
            pending: list[str] = []
            for device in loop.release_loop(config, volume_id, pending=pending):
                call.notes.append(f"detached {device}")
            call.notes.extend(_pending_notes(pending))
    return protocol.success()


def do_waitforattach(config: Config, args: list[str], call: CallInfo) -> Reply:
    spec = _spec(args[1], call)
    return protocol.success(device=_device_token(spec.volume_id))


def do_expandvolume(config: Config, args: list[str], call: CallInfo) -> Reply:
    # Runs on the controller-manager's machine, which holds no backing file: validate only.
    _spec(args[0], call)
    new = _bytes(args[2], "new size")
    if args[3]:
        _bytes(args[3], "old size")
    return protocol.success(volumeNewSize=str(new))


def do_expandfs(config: Config, args: list[str], call: CallInfo) -> Reply:
    from flexvol.core import growth, loop, state
    from flexvol.core.errors import Refused
    from flexvol.core.undo import Undo

    spec = _spec(args[0], call)
    # The options still carry the PV's original size; the new size comes from argv
    # (FLEXVOLUME.md 7).
    new = _bytes(args[3], "new size")
    # Also checked before locking, so that a call for a volume this node never had leaves no
    # lock file behind.
    if not os.path.exists(config.backing_file(spec.volume_id)):
        raise Refused(f"volume {spec.volume_id} does not exist on this node", "nothing to expand")
    state.ensure_dirs(config)
    with state.VolumeLock(config, spec.volume_id):
        record = state.load_record(config, spec.volume_id)
        if record is None or not os.path.exists(config.backing_file(spec.volume_id)):
            raise Refused(f"volume {spec.volume_id} does not exist on this node", "nothing to expand")
        undo = Undo()
        try:
            if growth.grow(config, record, spec, new, undo):
                call.notes.append(f"grew to {new}")
        finally:
            # A loop device no mount uses is released again: the one attached only to grow an
            # idle volume, and one a killed call left behind (its retry found it attached).
            loop.release_loop(config, spec.volume_id)
    return protocol.success()



# verb -> (handler, argument names after the verb)
VERBS: dict[str, tuple[Callable[[Config, list[str], CallInfo], Reply], tuple[str, ...]]] = {
    "init": (do_init, ()),
    "attach": (do_attach, ("options", "node")),
    "isattached": (do_isattached, ("options", "node")),
    "detach": (do_detach, ("pv name", "node")),
    "waitforattach": (do_waitforattach, ("device", "options")),
    "mountdevice": (do_mountdevice, ("device mount dir", "device", "options")),
    "unmountdevice": (do_unmount, ("device mount dir",)),
    "mount": (do_mount, ("mount dir", "options")),
    "unmount": (do_unmount, ("mount dir",)),
    "expandvolume": (do_expandvolume, ("options", "controller path", "new size", "old size")),
    "expandfs": (do_expandfs, ("options", "device", "mount dir", "new size", "old size")),
}


def dispatch(config: Config, argv: list[str], call: CallInfo) -> Reply:
    """Answer one call. Raises FlexvolError for refusals; main turns them into a Failure."""
    verb = argv[0] if argv else ""
    entry = VERBS.get(verb)
    if entry is None:
        # getvolumename included: its name would be ignored anyway (FLEXVOLUME.md 3, #60046).
        return protocol.not_supported(verb)
    handler, names = entry
    args = argv[1:]
    call.args = args
    if len(args) != len(names):
        usage = " ".join(f"<{name}>" for name in names)
        raise InvalidInput(f"{verb} takes {len(names)} argument(s), got {len(args)}",
                           f"usage: {verb} {usage}".rstrip())
    return handler(config, args, call)


def main(argv: list[str], *, data_root: str | None = None, attach: bool | None = None) -> int:
    """Run one driver call: exactly one JSON object on stdout, nothing on stderr, exit code."""
    reply_fd = os.dup(1)
    # Whatever else writes to stdout or stderr (a stray warning, the interpreter at exit) must
    # not reach the kubelet, which parses both streams as one JSON object (FLEXVOLUME.md 2).
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)
    call = CallInfo(argv[0] if argv else "")
    config = config_module.load(data_root, attach)
    try:
        checkpoint("dispatched")
        reply = dispatch(config, argv, call)
    except FlexvolError as error:
        reply = protocol.failure(str(error))
    except Exception as error:
        import traceback

        call.error_detail = traceback.format_exc()[-4000:]
        reply = protocol.failure(f"internal error in {call.verb or 'driver'}: "
                                 f"{type(error).__name__}: {error}; see {config.journal_path}")
    protocol.write_reply(reply, reply_fd)
    os.close(reply_fd)
    checkpoint("replied")
    if call.verb != "init" and call.verb in VERBS:
        from flexvol.core import journal, runner

        journal.append(config, call, reply.status, reply.message, runner.history)
    return reply.exit_code


def main_and_exit(argv: list[str], *, data_root: str | None = None,
                  attach: bool | None = None) -> None:
    """`main`, then leave at once: what the entry points call.

    The reply and the journal line went out with raw writes on descriptors already closed, so
    nothing is buffered; skipping the interpreter's teardown (freeing every module, 1 to 3 ms)
    shortens the wait of the kubelet, which waits for the process to exit.
    """
    os._exit(main(argv, data_root=data_root, attach=attach))
