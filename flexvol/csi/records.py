"""The volume records as the CSI front end reads them (the same records as state.py keeps)."""

from __future__ import annotations

import os

from flexvol.core import state
from flexvol.core.config import Config
from flexvol.core.filesystems import DEFAULT_FS_TYPE
from flexvol.csi import names
from flexvol.csi.status import Code, CsiError


def exists(config: Config, volume_id: str) -> bool:
    return os.path.exists(config.record_path(volume_id)) or os.path.exists(config.backing_file(volume_id))


def known(config: Config, volume_id: str) -> state.Record:
    """The record of a volume of this node's pool, or NOT_FOUND."""
    record = state.load_record(config, volume_id) if names.is_volume_id(volume_id) else None
    if record is None:
        raise CsiError(Code.NOT_FOUND, f"volume {volume_id[:80]!r} does not exist in this node's pool "
                       f"({config.volumes_dir})")
    return record


def fs_type(record: state.Record) -> str:
    """The filesystem the volume holds (or will hold, before its first format)."""
    return record.formatted_fs or record.fs_type or DEFAULT_FS_TYPE


def is_block(record: state.Record) -> bool:
    """A raw block volume: never formatted, served only with the block access type."""
    return bool(record.block)


def check_access(record: state.Record, volume_id: str, block: bool, wanted_fs: str = "") -> None:
    """FAILED_PRECONDITION unless the volume is what the request asks for (the spec's "exceeds
    capabilities": the volume does not support them): a volume is made raw block or filesystem
    and stays it, so nothing is ever formatted over a raw volume's data nor a filesystem handed
    out raw; touches nothing."""
    if is_block(record) and not block:
        raise CsiError(Code.FAILED_PRECONDITION, f"volume {volume_id} is a raw block volume: it holds "
                       "what its users wrote and is never formatted; ask for it with the block access type")
    if block and not is_block(record):
        raise CsiError(Code.FAILED_PRECONDITION, f"volume {volume_id} holds a {fs_type(record)} "
                       "filesystem: it is served with the mount access type only, never as a raw "
                       "block device")
    have = fs_type(record)
    if wanted_fs and not block and wanted_fs != have:
        raise CsiError(Code.FAILED_PRECONDITION, f"volume {volume_id} holds {have}, not {wanted_fs}; "
                       "it is never formatted again")
