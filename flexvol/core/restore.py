"""New volumes made from a snapshot (restore) or from a volume (clone), on snapshots.py's files
and records.

A restore or clone writes the new volume's record first, marked `restoring`, copies into a
hidden file beside the volumes, gives the copy a new filesystem UUID where the filesystem needs
one to be mounted beside its source (fsuuid.py), renames it into place and only then records it
formatted (so it is never formatted again) and drops the mark. A raw block source makes a raw
block volume: its copy is bytes, never probed, given a UUID or formatted, and its record says
`block`. A killed restore is discarded by its retry or by repair; the driver refuses to mount a
volume still marked.

Locks: a restore holds the new volume's lock and the snapshot's (or the source volume's, for a
clone).
"""

from __future__ import annotations

import os

from flexvol.core import filecopy, state
from flexvol.core.errors import InvalidInput, Refused
from flexvol.core.faults import checkpoint
from flexvol.core.snapshots import (
    Quiesced,
    allocated_bytes,
    check_name,
    check_room,
    clean_leftovers,
    copyable_source,
    ensure_dir,
    load_snapshot,
    lock,
    partial_file,
    snapshot_file,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from flexvol.core.config import Config
    from flexvol.core.journal import CallInfo
    from flexvol.core.options import VolumeSpec
    from flexvol.core.snapshots import Progress


# What the provisioning agent writes into a record before the volume's file exists.
_OWNER_FIELDS = ("pv_name", "pv_uid", "namespace", "claim")


def _placeholder(record: state.Record) -> bool:
    """A record with no file, no filesystem and no copy under way: only its owner is known."""
    return not (record.formatted or record.mkfs_started or record.block or record.restoring
                or record.restored_from)


def _check_kind(volume_id: str, block: bool, fs_type: str) -> None:
    """A copy keeps its source's kind: a raw block source makes a raw block volume (never
    formatted), a filesystem source a filesystem volume (never exposed raw)."""
    if not block and not fs_type:
        raise Refused(f"the source of volume {volume_id} records neither a filesystem nor a raw "
                      "block volume", "check it with 'flexvol fsck'")


def _check_source_owner(config: Config, spec: VolumeSpec, volume: str, what: str) -> None:
    """A pod may copy only what it could mount: the source volume's namespace must be the pod's
    (or the volume shareable), as for a mount (backing.check_namespace, README Threat model).
    Otherwise any pod could read another namespace's data through an inline volume's
    fromVolume / fromSnapshot option. Calls without a pod namespace (the toolkit, CSI, whose CO
    checks the data source's namespace) are not checked here; nothing is claimed."""
    if not spec.pod_namespace:
        return
    owner_record = state.load_record(config, volume) if volume else None
    owner = owner_record.namespace if owner_record is not None else None
    if owner and owner != spec.pod_namespace and not owner_record.shareable:  # type: ignore[union-attr]
        raise Refused(f"{what} holds data of namespace {owner}; refusing to copy it for pod "
                      f"{spec.pod_namespace}/{spec.pod_name or '?'}",
                      f"copy a volume of namespace {spec.pod_namespace}, or have an operator run "
                      f"'flexvol share {volume}'")


def create_from(config: Config, spec: VolumeSpec, call: CallInfo, *, from_snapshot: str = "",
                from_volume: str = "", created_by: str = "", progress: Progress | None = None,
                fields: dict | None = None) -> state.Record:
    """Make volume spec.volume_id a copy of snapshot `from_snapshot` or volume `from_volume`,
    at least the source's size (bigger when spec.size_given asks more), with the source's
    filesystem, recorded formatted; return its record. `fields` go into the record from its
    first write (a front end's own, such as the CSI name)."""
    from flexvol.core.options import check_volume_id

    if bool(from_snapshot) == bool(from_volume):
        raise InvalidInput("give one source: a snapshot or a volume")
    new = spec.volume_id
    if from_snapshot:
        check_name(from_snapshot)
    else:
        check_volume_id(from_volume)
        if from_volume == new:
            raise InvalidInput(f"volume {new} cannot be a clone of itself")
    call.volume_id = new
    ensure_dir(config)
    call.notes.extend(clean_leftovers(config))
    with state.VolumeLock(config, new, wait=10):
        call.notes.extend(discard_restore(config, new))
        existing = state.load_record(config, new)
        wanted = {"from_snapshot": from_snapshot} if from_snapshot else {"from_volume": from_volume}
        if existing is not None and os.path.exists(config.backing_file(new)) and \
                {key: (existing.restored_from or {}).get(key) for key in wanted} == wanted:
            call.notes.append(f"volume {new} was made from it already")  # a repeat of this call
            return existing
        if os.path.exists(config.backing_file(new)) or (existing is not None and not _placeholder(existing)):
            raise Refused(f"volume {new} already exists", "choose another name")
        if existing is not None:
            # The node agent recorded the volume's owner before its first mount: kept.
            fields = {**{key: getattr(existing, key) for key in _OWNER_FIELDS
                         if getattr(existing, key) is not None}, **(fields or {})}
        source_lock = lock(config, from_snapshot) if from_snapshot else \
            state.VolumeLock(config, from_volume, wait=30)
        with source_lock:
            if from_snapshot:
                origin = load_snapshot(config, from_snapshot)
                if origin is None or not origin.ready:
                    raise Refused(f"snapshot {from_snapshot} does not exist", "see 'flexvol snapshot ls'")
                path, fs_type = snapshot_file(config, from_snapshot), origin.fs_type or ""
                old_uuid = origin.uuid or ""
                source = {"from_snapshot": from_snapshot}
                block = bool(origin.block)
            else:
                origin = copyable_source(config, from_volume)
                path, fs_type = config.backing_file(from_volume), origin.formatted_fs
                old_uuid = str((origin.formatted or {}).get("uuid") or "")
                source = {"from_volume": from_volume}
                block = bool(origin.block)
            _check_kind(new, block, fs_type)
            _check_source_owner(config, spec, from_volume or origin.source_volume,
                                f"snapshot {from_snapshot}" if from_snapshot else f"volume {from_volume}")
            source_size = os.stat(path).st_size
            size = max(source_size, spec.size_bytes if spec.size_given else 0)
            from flexvol.core import backing

            backing.check_pool_space(config, size, new)
            check_room(config, allocated_bytes(path), f"volume {new}")
            record = state.new_record(new, source_size, fs_type)
            record.restoring = {**source, "at": state.now()}
            record.allocation = spec.allocation
            if block:
                record.block = True
            if created_by:
                record.created_by = created_by
            for key, value in (fields or {}).items():
                setattr(record, key, value)
            state.save_record(config, record)
            checkpoint("restore-claimed")
            try:
                record = _copy_into(config, record, path, fs_type, source, progress,
                                    from_volume=origin if from_volume else None, old_uuid=old_uuid)
            except BaseException:
                discard_restore(config, new)
                raise
        method = (record.restored_from or {}).get("method")
        call.notes.append(f"made from {next(iter(source.values()))} by {method}")
        return _finish(config, record, size, call, progress)


def _copy_into(config: Config, record: state.Record, path: str, fs_type: str, source: dict,
               progress: Progress | None, from_volume: state.Record | None, old_uuid: str) -> state.Record:
    from flexvol.core import fsuuid, kernel
    from flexvol.core.errors import FlexvolError

    new = record.volume_id
    partial = partial_file(config, new)
    state.remove(partial)
    if from_volume is not None:
        with Quiesced(config, from_volume):
            method = filecopy.copy_file(path, partial, progress=progress)
            checkpoint("copied")
    else:
        method = filecopy.copy_file(path, partial, progress=progress)
        checkpoint("copied")
    if record.block:
        # A raw block copy is bytes: never probed as a filesystem, never given a UUID, never
        # formatted (its record stays unformatted and `block`).
        return _place(config, record, partial, source, method, None)
    fsuuid.give_new_uuid(config, partial, fs_type, new, old_uuid)
    found = kernel.probe(partial)
    if found.fs_type != fs_type:
        raise FlexvolError(f"the copy for volume {new} holds {found.fs_type or 'nothing'}, not the "
                           f"{fs_type} of its source", "check the source with 'flexvol fsck'")
    return _place(config, record, partial, source, method,
                  {"fs_type": found.fs_type, "uuid": found.uuid, "at": state.now()})


def _place(config: Config, record: state.Record, partial: str, source: dict, method: str,
           formatted: dict | None) -> state.Record:
    """Rename the whole copy into place, then record it made (and formatted, for a filesystem)."""
    os.rename(partial, config.backing_file(record.volume_id))
    state.fsync_dir(config.volumes_dir)
    checkpoint("restore-renamed")
    if formatted is not None:
        record.formatted = formatted
    record.restored_from = {**source, "method": method}
    record.restoring = None
    state.save_record(config, record)
    checkpoint("restore-recorded")
    return record


def _finish(config: Config, record: state.Record, size: int, call: CallInfo,
            progress: Progress | None) -> state.Record:
    """Grow the new volume to the size asked and reserve a thick one's blocks. Past this point
    the volume is whole: a failure here is reported and left to `flexvol resize` or the next
    mount, as for any volume."""
    from flexvol.core import backing, growth, loop
    from flexvol.core.undo import Undo

    new = record.volume_id
    if size > int(record.size_bytes):
        try:
            growth.grow(config, record, size, Undo())
            call.notes.append(f"grew to {size}")
        finally:
            loop.release_loop(config, new)
    backing.ensure_reserved(config, record, strict=True, progress=progress)
    return state.load_record(config, new) or record


def discard_restore(config: Config, volume_id: str) -> list[str]:
    """Remove what a killed restore or clone of `volume_id` left: the hidden copy, and the file
    and record when the record is still marked `restoring` (the caller holds the lock)."""
    from flexvol.core import fsuuid

    fsuuid.release_scratch(config, volume_id)
    removed = []
    if state.remove(partial_file(config, volume_id)):
        removed.append(partial_file(config, volume_id))
    record = state.load_record(config, volume_id)
    if record is not None and record.restoring:
        for path in (config.backing_file(volume_id), config.record_path(volume_id)):
            if state.remove(path, durable=True):
                removed.append(path)
    return [f"removed unfinished copy {path}" for path in removed]


def unfinished_restores(config: Config) -> list[str]:
    """Volume ids with a hidden partial copy or a record still marked `restoring`."""
    found = set()
    try:
        for name in os.listdir(config.volumes_dir):
            if name.startswith(".") and name.endswith(".partial"):
                found.add(name[1:-len(".partial")])
        from flexvol.core import layout

        # A corrupt record is repair's own finding, not an unfinished restore.
        found.update(record.volume_id for record in layout.iter_records(config, on_corrupt=lambda *_: None)
                     if record.restoring)
    except OSError:
        pass
    return sorted(found)
