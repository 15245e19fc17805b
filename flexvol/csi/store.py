"""Making and removing a CSI volume in this node's pool, with the FlexVolume driver's steps
(volume.py) and records (state.py). Callers hold the volume's lock and own the Undo."""

from __future__ import annotations

from flexvol.core import backing, formatting, layout, loop, state
from flexvol.core.config import Config
from flexvol.core.faults import checkpoint
from flexvol.core.options import VolumeSpec
from flexvol.core.undo import Undo, path_gone
from flexvol.csi import names


def make(config: Config, spec: VolumeSpec, name: str, undo: Undo, *, block: bool = False,
         **fields: object) -> tuple[state.Record, str]:
    """Record (with the CSI name and `fields`), file, loop, format once (a raw block volume,
    `block`, never), reserve; returns the record and the loop device, which the caller mounts or
    releases.

    The record naming the CSI name is written before anything else: a plugin killed at any
    later step leaves a volume the retry recognises as its own and finishes, never one it
    refuses as somebody else's.
    """
    if state.load_record(config, spec.volume_id) is None:
        record = state.new_record(spec.volume_id, spec.size_bytes, spec.fs_type)
        record.csi_name, record.created_by, record.allocation = name, names.CREATED_BY, spec.allocation
        for field, value in fields.items():
            setattr(record, field, value)
        if block:
            record.block = True
        state.save_record(config, record)
        record_path = config.record_path(spec.volume_id)
        undo.push(f"remove new record of {spec.volume_id}", lambda: state.remove(record_path),
                  path_gone(record_path))
        checkpoint("csi-record-saved")
    record, created = backing.ensure_file(config, spec, undo, may_create=True)
    device = loop.ensure_loop(config, record, undo)
    if not record.block:
        formatting.ensure_filesystem(config, record, device, spec, created=created)
    backing.ensure_reserved(config, record, strict=True)
    return record, device


def remove(config: Config, volume_id: str) -> None:
    """Forget the volume's mount dirs, then remove its file and, last, its record (which a retry
    finds: a kill between the two leaves a record the retried call removes)."""
    for path, target in layout.iter_targets(config):
        if target.volume_id == volume_id:
            state.remove(path)
    state.remove(config.backing_file(volume_id), durable=True)
    checkpoint("backing-file-removed")
    state.remove(config.record_path(volume_id), durable=True)
