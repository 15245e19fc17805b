"""The FlexVolume front end: one small function per verb, the table of verbs, and `main`.

Each handler only translates: argv and the options JSON in, one core operation
(core/operations.py, which takes the volume's lock and owns the rollback), one JSON reply out.
The dispatcher is the one place that checks the arguments, journals the call and turns errors
into replies. Argument order follows docs/flexvolume.md section 3.
"""

from __future__ import annotations

import os

from flexvol.core import config as config_module
from flexvol.core.errors import FlexvolError, InvalidInput
from flexvol.flex import protocol

# Everything else is imported inside the verbs that need it: `init` runs at every plugin
# probe and must stay close to a bare interpreter start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from flexvol.core.config import Config
    from flexvol.core.journal import CallInfo
    from flexvol.core.options import VolumeSpec
    from flexvol.flex.protocol import Reply


def checkpoint(step: str) -> None:
    """faults.checkpoint, loaded only when the test hooks are on: init loads one module fewer."""
    if os.environ.get("FLEXVOL_TEST_HOOKS") == "1":
        from flexvol.core import faults

        faults.checkpoint(step)


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

def do_init(config: Config, args: list[str] | None = None, call: CallInfo | None = None) -> Reply:
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
    from flexvol.core import operations

    operations.mount(config, args[0], _spec(args[1], call), call)
    return protocol.success()


def do_mountdevice(config: Config, args: list[str], call: CallInfo) -> Reply:
    # args: <deviceMountPath> <devicePath> <options>; the device is resolved from volumeID.
    from flexvol.core import operations

    operations.mount(config, args[0], _spec(args[2], call), call)
    return protocol.success()


def do_unmount(config: Config, args: list[str], call: CallInfo) -> Reply:
    from flexvol.core import operations

    operations.unmount(config, args[0], call)
    return protocol.success()


def do_attach(config: Config, args: list[str], call: CallInfo) -> Reply:
    from flexvol.core import operations
    from flexvol.core.options import check_pv_name

    spec = _spec(args[0], call)
    node = _check_node(args[1])
    operations.attach(config, check_pv_name(spec.pv_name), spec.volume_id, node, call)
    return protocol.success(device=_device_token(spec.volume_id))


def do_isattached(config: Config, args: list[str], call: CallInfo) -> Reply:
    from flexvol.core import operations
    from flexvol.core.options import check_pv_name

    spec = _spec(args[0], call)
    node = _check_node(args[1])
    pv_name = check_pv_name(spec.pv_name)
    return protocol.success(attached=operations.is_attached(config, pv_name, spec.volume_id, node))


def do_detach(config: Config, args: list[str], call: CallInfo) -> Reply:
    from flexvol.core import operations
    from flexvol.core.options import check_pv_name

    operations.detach(config, check_pv_name(args[0]), _check_node(args[1]), call)
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
    from flexvol.core import operations

    spec = _spec(args[0], call)
    # The options still carry the PV's original size; the new size comes from argv
    # (docs/flexvolume.md section 7).
    operations.expand(config, spec.volume_id, _bytes(args[3], "new size"), call)
    return protocol.success()


# verb -> (handler, argument names after the verb, what it holds). LOCKS: its core operation
# takes the volume's lock for the whole call (core/operations.py); the handler itself only
# translates. "": it reads, or only validates, and holds no lock.
LOCKS = "volume lock"
VERBS: dict[str, tuple[Callable[[Config, list[str], CallInfo], Reply], tuple[str, ...], str]] = {
    "init": (do_init, (), ""),
    "attach": (do_attach, ("options", "node"), LOCKS),
    "isattached": (do_isattached, ("options", "node"), ""),
    "detach": (do_detach, ("pv name", "node"), LOCKS),
    "waitforattach": (do_waitforattach, ("device", "options"), ""),
    "mountdevice": (do_mountdevice, ("device mount dir", "device", "options"), LOCKS),
    "unmountdevice": (do_unmount, ("device mount dir",), LOCKS),
    "mount": (do_mount, ("mount dir", "options"), LOCKS),
    "unmount": (do_unmount, ("mount dir",), LOCKS),
    "expandvolume": (do_expandvolume, ("options", "controller path", "new size", "old size"), ""),
    "expandfs": (do_expandfs, ("options", "device", "mount dir", "new size", "old size"), LOCKS),
}


def dispatch(config: Config, argv: list[str], call: CallInfo) -> Reply:
    """Answer one call. Raises FlexvolError for refusals; main turns them into a Failure."""
    verb = argv[0] if argv else ""
    entry = VERBS.get(verb)
    if entry is None:
        # getvolumename included: its name would be ignored anyway (docs/flexvolume.md section 3, #60046).
        return protocol.not_supported(verb)
    handler, names, _holds = entry
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
    # not reach the kubelet, which parses both streams as one JSON object (docs/flexvolume.md section 2).
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)
    config = config_module.load(data_root, attach)
    if argv == ["init"]:
        # The plugin probe, many times a minute, is never journaled: journal.py stays unloaded.
        checkpoint("dispatched")
        reply = do_init(config)
        protocol.write_reply(reply, reply_fd)
        os.close(reply_fd)
        checkpoint("replied")
        return reply.exit_code
    from flexvol.core import runner
    from flexvol.core.journal import CallInfo

    call = CallInfo(argv[0] if argv else "")
    # The call's own context: the commands its journal line lists, the locks its children inherit.
    with runner.call() as context:
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
        from flexvol.core import journal

        journal.append(config, call, reply.status, reply.message, context.history)
    return reply.exit_code


def main_and_exit(argv: list[str], *, data_root: str | None = None,
                  attach: bool | None = None) -> None:
    """`main`, then leave at once: what the entry points call.

    The reply and the journal line went out with raw writes on descriptors already closed, so
    nothing is buffered; skipping the interpreter's teardown (freeing every module, 1 to 3 ms)
    shortens the wait of the kubelet, which waits for the process to exit.
    """
    os._exit(main(argv, data_root=data_root, attach=attach))
