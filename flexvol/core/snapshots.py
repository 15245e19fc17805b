"""Snapshots of volumes, and new volumes made from a snapshot (restore) or a volume (clone).

A snapshot is a copy of a volume's backing file under <data root>/snapshots (docs/layout.md
section 8), taken while the volume's filesystem is frozen when it is mounted (freeze.py), made
by reflink where the data root can share blocks, else by sparse copy (filecopy.py). Its record
is written `ready: false` before the copy and `ready: true` after it, both fsynced: a snapshot
interrupted at any step is never listed, and the next snapshot call or `flexvol repair` removes
what it left.

A restore or clone writes the new volume's record first, marked `restoring`, copies into a
hidden file beside the volumes, gives the copy a new filesystem UUID where the filesystem needs
one to be mounted beside its source (fsuuid.py), renames it into place and only then records it formatted
(so it is never formatted again) and drops the mark. A killed restore is discarded by its retry
or by repair; the driver refuses to mount a volume still marked.

Locks: a snapshot is taken under its volume's lock and the snapshot's own (`@snapshot.<name>`,
a name no volume id can have); a restore holds the new volume's lock and the snapshot's (or the
source volume's, for a clone); a delete holds the snapshot's.
"""

from __future__ import annotations

import os

from flexvol.core import filecopy, freeze, state, wirejson
from flexvol.core.errors import Busy, InvalidInput, Refused
from flexvol.core.faults import checkpoint

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from flexvol.core.config import Config
    from flexvol.core.journal import CallInfo
    from flexvol.core.options import VolumeSpec

    Progress = Callable[[int, int], None]

# ---- paths and records -----------------------------------------------------------------------

def snapshots_dir(config: Config) -> str:
    return os.path.join(config.data_root, "snapshots")


def snapshot_file(config: Config, name: str) -> str:
    return os.path.join(snapshots_dir(config), name + ".img")


def record_path(config: Config, name: str) -> str:
    return os.path.join(snapshots_dir(config), name + ".json")


def partial_file(config: Config, volume_id: str) -> str:
    """Where a restore or clone copies to before the file is renamed into place: hidden, so
    the budget, the inventory and the kernel-name matching never take it for a volume."""
    return os.path.join(config.volumes_dir, f".{volume_id}.partial")


def lock(config: Config, name: str, wait: float = 10) -> state.VolumeLock:
    return state.VolumeLock(config, "@snapshot." + name, wait=wait)


def check_name(name: str) -> str:
    from flexvol.core.options import VOLUME_ID_FIRST, VOLUME_ID_REST

    if not name or len(name) > 63 or name[0] not in VOLUME_ID_FIRST or \
            any(char not in VOLUME_ID_REST for char in name):
        raise InvalidInput(f"snapshot name {name[:80]!r} is invalid",
                           "use 1 to 63 characters of a-z, 0-9, '.', '_' or '-', starting with a "
                           "letter or digit")
    return name


def load_snapshot(config: Config, name: str) -> dict | None:
    return state.read_json(record_path(config, name))


def _save(config: Config, record: dict) -> None:
    state.atomic_write(record_path(config, record["name"]), (wirejson.dumps(record) + "\n").encode())


def _ensure_dir(config: Config) -> None:
    state.ensure_dirs(config)
    os.makedirs(snapshots_dir(config), 0o700, exist_ok=True)


def allocated_bytes(path: str) -> int:
    try:
        return os.stat(path).st_blocks * 512
    except OSError:
        return 0


def list_snapshots(config: Config, volume_id: str = "", *, partial: bool = False) -> list[dict]:
    """Snapshot records, oldest first, each with `allocated_bytes` (what its file holds) and
    `file`; only ready ones unless `partial`."""
    try:
        names = sorted(name for name in os.listdir(snapshots_dir(config))
                       if name.endswith(".json") and not name.startswith("."))
    except OSError:
        return []
    found = []
    for name in names:
        record = state.read_json(os.path.join(snapshots_dir(config), name))
        if record is None or (not partial and not record.get("ready")):
            continue
        if volume_id and record.get("source_volume") != volume_id:
            continue
        path = snapshot_file(config, record["name"])
        found.append({**record, "file": path, "allocated_bytes": allocated_bytes(path)})
    found.sort(key=lambda item: (str(item.get("created_at")), item["name"]))
    return found


# ---- what killed calls leave -------------------------------------------------------------------

def discard_partial(config: Config, name: str) -> list[str]:
    """Remove an unready snapshot's file and record (the caller holds its lock)."""
    removed = []
    record = load_snapshot(config, name)
    if record is not None and record.get("ready"):
        return removed
    for path in (snapshot_file(config, name), record_path(config, name)):
        if state.remove(path, durable=True):
            removed.append(path)
    return removed


def clean_leftovers(config: Config) -> list[str]:
    """Thaw what killed calls left frozen and remove the partial snapshots nobody is making
    (their lock is free); notes of what was done."""
    notes = freeze.thaw_leftovers(config)
    for record in list_snapshots(config, partial=True):
        if record.get("ready"):
            continue
        try:
            with lock(config, record["name"], wait=0):
                notes.extend(f"removed partial snapshot file {path}"
                             for path in discard_partial(config, record["name"]))
        except Busy:
            continue
    return notes


# ---- snapshot, delete ----------------------------------------------------------------------------

def snapshot(config: Config, volume_id: str, name: str, call: CallInfo, *,
             progress: Progress | None = None, fields: dict | None = None) -> dict:
    """Take snapshot `name` of volume `volume_id`, mounted or not; return its record (with
    `fields`, a front end's own). A repeat for the same volume returns the snapshot taken."""
    from flexvol.core.options import check_volume_id

    check_volume_id(volume_id)
    check_name(name)
    call.volume_id = volume_id
    _ensure_dir(config)
    call.notes.extend(clean_leftovers(config))
    with state.VolumeLock(config, volume_id, wait=30), lock(config, name):
        existing = load_snapshot(config, name)
        if existing is not None and existing.get("ready"):
            if existing.get("source_volume") == volume_id:
                call.notes.append(f"snapshot {name} exists already")
                return existing
            raise Refused(f"snapshot {name} already exists, of volume {existing.get('source_volume')}",
                          "choose another name, or delete that snapshot first")
        call.notes.extend(f"removed partial snapshot file {path}" for path in discard_partial(config, name))
        source = _formatted_source(config, volume_id)
        path = config.backing_file(volume_id)
        _check_room(config, allocated_bytes(path), f"snapshot {name} of volume {volume_id}")
        record = {"schema": state.SCHEMA, "name": name, "source_volume": volume_id,
                  "size_bytes": os.stat(path).st_size, "fs_type": (source.formatted or {}).get("fs_type"),
                  "uuid": (source.formatted or {}).get("uuid"), "created_at": state.now(), "ready": False,
                  **(fields or {})}
        _save(config, record)
        checkpoint("snapshot-claimed")
        try:
            with freeze.Frozen(config, volume_id) as frozen:
                record["frozen"] = bool(frozen.mount_point)
                record["method"] = filecopy.copy_file(path, snapshot_file(config, name), progress=progress)
                checkpoint("copied")
            record["ready"] = True
            _save(config, record)
            checkpoint("snapshot-ready")
        except BaseException:
            discard_partial(config, name)
            raise
        call.notes.append(f"snapshot {name} of {volume_id} taken by {record['method']}"
                          + (" while frozen" if record["frozen"] else ""))
        return record


def delete_snapshot(config: Config, name: str, call: CallInfo) -> list[str]:
    """Remove a snapshot's file and record; the paths removed. Volumes restored from it are
    independent files and stay."""
    check_name(name)
    _ensure_dir(config)
    with lock(config, name):
        record = load_snapshot(config, name)
        if record is None and not os.path.exists(snapshot_file(config, name)):
            raise Refused(f"snapshot {name} does not exist", "see 'flexvol snapshot ls'")
        call.volume_id = (record or {}).get("source_volume") or ""
        removed = [path for path in (snapshot_file(config, name), record_path(config, name))
                   if state.remove(path, durable=True)]
        call.notes.extend(f"removed {path}" for path in removed)
        return removed


def _formatted_source(config: Config, volume_id: str) -> state.Record:
    record = state.load_record(config, volume_id)
    path = config.backing_file(volume_id)
    if record is None or not os.path.exists(path):
        raise Refused(f"volume {volume_id} does not exist", "see 'flexvol ls'")
    if record.restoring:
        raise Refused(f"volume {volume_id} is still being restored", "retry once that finishes")
    if not record.formatted:
        raise Refused(f"volume {volume_id} holds no filesystem yet, so there is nothing to copy",
                      "mount it once first")
    return record


def _check_room(config: Config, need: int, what: str) -> None:
    """A copy takes its data's blocks; a reflink takes them as the source is written again.
    Either way they must fit in what the pool has not promised to thin volumes (budget.py)."""
    from flexvol.core import budget
    from flexvol.core.quantity import human_bytes

    pool = budget.measure(config)
    honest = pool.free_bytes - pool.promised_bytes
    if need > honest:
        raise Refused(f"{what} needs {human_bytes(need)} of the pool, but {pool.describe()}: "
                      f"{human_bytes(max(0, honest))} available",
                      "free space on the pool filesystem, or delete unused snapshots or volumes")


# ---- restore and clone ---------------------------------------------------------------------------

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
    _ensure_dir(config)
    call.notes.extend(clean_leftovers(config))
    with state.VolumeLock(config, new, wait=10):
        call.notes.extend(discard_restore(config, new))
        existing = state.load_record(config, new)
        wanted = {"from_snapshot": from_snapshot} if from_snapshot else {"from_volume": from_volume}
        if existing is not None and os.path.exists(config.backing_file(new)) and \
                {key: (existing.restored_from or {}).get(key) for key in wanted} == wanted:
            call.notes.append(f"volume {new} was made from it already")  # a repeat of this call
            return existing
        if os.path.exists(config.backing_file(new)) or existing is not None:
            raise Refused(f"volume {new} already exists", "choose another name")
        source_lock = lock(config, from_snapshot) if from_snapshot else \
            state.VolumeLock(config, from_volume, wait=30)
        with source_lock:
            if from_snapshot:
                origin = load_snapshot(config, from_snapshot)
                if origin is None or not origin.get("ready"):
                    raise Refused(f"snapshot {from_snapshot} does not exist", "see 'flexvol snapshot ls'")
                path, fs_type = snapshot_file(config, from_snapshot), str(origin.get("fs_type"))
                old_uuid = str(origin.get("uuid") or "")
                source = {"from_snapshot": from_snapshot}
            else:
                origin = _formatted_source(config, from_volume)
                path, fs_type = config.backing_file(from_volume), str((origin.formatted or {}).get("fs_type"))
                old_uuid = str((origin.formatted or {}).get("uuid") or "")
                source = {"from_volume": from_volume}
            source_size = os.stat(path).st_size
            size = max(source_size, spec.size_bytes if spec.size_given else 0)
            from flexvol.core import backing

            backing.check_pool_space(config, size, new)
            _check_room(config, allocated_bytes(path), f"volume {new}")
            record = state.new_record(new, source_size, fs_type)
            record.restoring = {**source, "at": state.now()}
            record.allocation = spec.allocation
            if created_by:
                record.created_by = created_by
            for key, value in (fields or {}).items():
                setattr(record, key, value)
            state.save_record(config, record)
            checkpoint("restore-claimed")
            try:
                record = _copy_into(config, record, path, fs_type, source, progress,
                                    freeze_volume=from_volume, old_uuid=old_uuid)
            except BaseException:
                discard_restore(config, new)
                raise
        method = (record.restored_from or {}).get("method")
        call.notes.append(f"made from {next(iter(source.values()))} by {method}")
        return _finish(config, record, size, call, progress)


def _copy_into(config: Config, record: state.Record, path: str, fs_type: str, source: dict,
               progress: Progress | None, freeze_volume: str, old_uuid: str) -> state.Record:
    from flexvol.core import fsuuid, kernel
    from flexvol.core.errors import FlexvolError

    new = record.volume_id
    partial = partial_file(config, new)
    state.remove(partial)
    if freeze_volume:
        with freeze.Frozen(config, freeze_volume):
            method = filecopy.copy_file(path, partial, progress=progress)
            checkpoint("copied")
    else:
        method = filecopy.copy_file(path, partial, progress=progress)
        checkpoint("copied")
    fsuuid.give_new_uuid(config, partial, fs_type, new, old_uuid)
    found = kernel.probe(partial)
    if found.fs_type != fs_type:
        raise FlexvolError(f"the copy for volume {new} holds {found.fs_type or 'nothing'}, not the "
                           f"{fs_type} of its source", "check the source with 'flexvol fsck'")
    os.rename(partial, config.backing_file(new))
    _fsync_dir(config.volumes_dir)
    checkpoint("restore-renamed")
    record.formatted = {"fs_type": found.fs_type, "uuid": found.uuid, "at": state.now()}
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


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
