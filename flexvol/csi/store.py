"""Making and removing a CSI volume in this node's pool, with the FlexVolume driver's steps
(volume.py) and records (state.py). Callers hold the volume's lock and own the Undo."""

from __future__ import annotations

import os

from flexvol.core import backing, formatting, loop, state
from flexvol.core.config import Config
from flexvol.core.faults import checkpoint
from flexvol.core.operations import BLOCK
from flexvol.core.options import VolumeSpec
from flexvol.core.undo import Undo, path_gone
from flexvol.csi import names


def make(config: Config, spec: VolumeSpec, name: str, undo: Undo, *, block: bool = False,
         **fields: object) -> tuple[dict, str]:
    """Record (with the CSI name and `fields`), file, loop, format once (a raw block volume,
    `block`, never), reserve; returns the record and the loop device, which the caller mounts or
    releases.

    The record naming the CSI name is written before anything else: a plugin killed at any
    later step leaves a volume the retry recognises as its own and finishes, never one it
    refuses as somebody else's.
    """
    if state.load_record(config, spec.volume_id) is None:
        record = state.new_record(spec.volume_id, spec.size_bytes, spec.fs_type)
        record.update({names.RECORD_NAME: name, "created_by": names.CREATED_BY,
                       "allocation": spec.allocation, **fields})
        if block:
            record[BLOCK] = True
        state.save_record(config, record)
        record_path = config.record_path(spec.volume_id)
        undo.push(f"remove new record of {spec.volume_id}", lambda: state.remove(record_path),
                  path_gone(record_path))
        checkpoint("csi-record-saved")
    record, created = backing.ensure_file(config, spec, undo, may_create=True)
    device = loop.ensure_loop(config, record, undo)
    if not record.get(BLOCK):
        formatting.ensure_filesystem(config, record, device, spec, created=created)
    backing.ensure_reserved(config, record, strict=True)
    return record, device


def remove(config: Config, volume_id: str) -> None:
    """Forget the volume's mount dirs, then remove its file and, last, its record (which a retry
    finds: a kill between the two leaves a record the retried call removes)."""
    try:
        entries = sorted(os.listdir(config.targets_dir))
    except OSError:
        entries = []
    for entry in entries:
        path = os.path.join(config.targets_dir, entry)
        if entry.endswith(".json") and (state.read_json(path) or {}).get("volume_id") == volume_id:
            state.remove(path)
    state.remove(config.backing_file(volume_id), durable=True)
    checkpoint("backing-file-removed")
    state.remove(config.record_path(volume_id), durable=True)
