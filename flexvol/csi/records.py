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
