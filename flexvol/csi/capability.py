"""Which volume capabilities flexvol serves, and what a capability asks of a mount.

Served: the mount access type (a filesystem of filesystems.FILESYSTEMS, mount flags from the
FlexVolume allowlist) and the block access type (the loop device itself, never formatted), each
with a single-node access mode. A flexvol volume is a file in one node's pool, so a mode that
spans nodes is refused, never half-served. A volume is made as one access type and stays it.
"""

from __future__ import annotations

from flexvol.core.errors import InvalidInput
from flexvol.core.filesystems import FILESYSTEMS
from flexvol.core.options import check_mount_options
from flexvol.csi.proto import csi_pb2
from flexvol.csi.status import invalid

Mode = csi_pb2.VolumeCapability.AccessMode
SINGLE_NODE_MODES = frozenset({Mode.SINGLE_NODE_WRITER, Mode.SINGLE_NODE_READER_ONLY,
                               Mode.SINGLE_NODE_SINGLE_WRITER, Mode.SINGLE_NODE_MULTI_WRITER})
READ_ONLY_MODES = frozenset({Mode.SINGLE_NODE_READER_ONLY, Mode.MULTI_NODE_READER_ONLY})


def unsupported(capability: csi_pb2.VolumeCapability) -> str:
    """Why flexvol cannot serve `capability`, or "" when it can."""
    mode = capability.access_mode.mode
    if mode == Mode.UNKNOWN:
        return "the volume capability has no access mode"
    if mode not in SINGLE_NODE_MODES:
        return (f"access mode {Mode.Mode.Name(mode)} spans several nodes, but a flexvol volume lives in "
                "one node's pool: use a SINGLE_NODE_* mode")
    kind = capability.WhichOneof("access_type")
    if kind == "block":
        return ""
    if kind != "mount":
        return "the volume capability has no access type (mount or block)"
    fs_type = capability.mount.fs_type
    if fs_type and fs_type not in FILESYSTEMS:
        return f"fsType {fs_type[:40]!r} is not supported: use one of {', '.join(sorted(FILESYSTEMS))}"
    try:
        check_mount_options(",".join(capability.mount.mount_flags))
    except InvalidInput as error:
        return str(error)
    return ""


def check(capability: csi_pb2.VolumeCapability) -> None:
    """INVALID_ARGUMENT unless flexvol serves `capability`."""
    reason = unsupported(capability)
    if reason:
        raise invalid(reason)


def check_all(capabilities: list[csi_pb2.VolumeCapability]) -> None:
    if not capabilities:
        raise invalid("volume capabilities are missing")
    for capability in capabilities:
        check(capability)


def mount_flags(capability: csi_pb2.VolumeCapability) -> tuple[str, ...]:
    return check_mount_options(",".join(capability.mount.mount_flags))


def read_only(capability: csi_pb2.VolumeCapability) -> bool:
    return capability.access_mode.mode in READ_ONLY_MODES


def is_block(capability: csi_pb2.VolumeCapability) -> bool:
    return capability.WhichOneof("access_type") == "block"


def access_type(capabilities: list[csi_pb2.VolumeCapability]) -> bool:
    """True for a raw block volume, False for a filesystem; INVALID_ARGUMENT when a request asks
    for both (a volume is made as one and stays it: a filesystem is never exposed raw, nor a
    raw volume formatted)."""
    kinds = {is_block(item) for item in capabilities}
    if len(kinds) > 1:
        raise invalid("the volume capabilities ask for both a raw block volume and a filesystem; "
                      "a flexvol volume is one or the other")
    return kinds == {True}
