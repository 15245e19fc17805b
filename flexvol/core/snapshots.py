"""Snapshots of volumes, and new volumes made from a snapshot (restore) or a volume (clone).

A snapshot is a copy of a volume's backing file under <data root>/snapshots (docs/layout.md
section 8), taken while the volume's filesystem is frozen when it is mounted (freeze.py), made
by reflink where the data root can share blocks, else by sparse copy (filecopy.py). Its record
is written `ready: false` before the copy and `ready: true` after it, both fsynced: a snapshot
interrupted at any step is never listed, and the next snapshot call or `flexvol repair` removes
what it left.

A raw block volume has no filesystem to freeze: its loop devices' buffers are written back
before the copy (blockflush.py), and its snapshot is recorded `block`. Restores and clones, the
new volumes made from a snapshot or a volume, are restore.py's.

Locks: a snapshot is taken under its volume's lock and the snapshot's own (`@snapshot.<name>`,
a name no volume id can have); a delete holds the snapshot's.
"""

from __future__ import annotations

import os

from flexvol.core import filecopy, freeze, layout, state, wirejson
from flexvol.core.errors import Busy, InvalidInput, Refused, StateCorrupt
from flexvol.core.faults import checkpoint
from flexvol.core.records import Snapshot

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from flexvol.core.config import Config
    from flexvol.core.journal import CallInfo

    Progress = Callable[[int, int], None]

# ---- paths and records -----------------------------------------------------------------------

def snapshots_dir(config: Config) -> str:
    return layout.snapshots_dir(config)


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


def load_snapshot(config: Config, name: str) -> Snapshot | None:
    return layout.load_snapshot(config, name)


def _save(config: Config, record: Snapshot) -> None:
    state.atomic_write(record_path(config, record.name), (wirejson.dumps(record.to_json()) + "\n").encode())


def ensure_dir(config: Config) -> None:
    state.ensure_dirs(config)
    os.makedirs(snapshots_dir(config), 0o700, exist_ok=True)


def allocated_bytes(path: str) -> int:
    try:
        return os.stat(path).st_blocks * 512
    except OSError:
        return 0


def list_snapshots(config: Config, volume_id: str = "", *, partial: bool = False,
                   on_corrupt: layout.OnCorrupt = None) -> list[Snapshot]:
    """Snapshot records, oldest first; only ready ones unless `partial` (a corrupt one raises
    StateCorrupt unless `on_corrupt`, layout.py)."""
    found = [record for record in layout.iter_snapshots(config, on_corrupt)
             if (partial or record.ready) and (not volume_id or record.source_volume == volume_id)]
    found.sort(key=lambda item: (item.created_at, item.name))
    return found


# ---- what killed calls leave -------------------------------------------------------------------

def discard_partial(config: Config, name: str) -> list[str]:
    """Remove an unready snapshot's file and record (the caller holds its lock)."""
    removed = []
    try:
        record = load_snapshot(config, name)
    except StateCorrupt:
        record = None  # unreadable: only its file and record are removed, as for any partial one
    if record is not None and record.ready:
        return removed
    for path in (snapshot_file(config, name), record_path(config, name)):
        if state.remove(path, durable=True):
            removed.append(path)
    return removed


def clean_leftovers(config: Config) -> list[str]:
    """Thaw what killed calls left frozen and remove the partial snapshots nobody is making
    (their lock is free); notes of what was done."""
    notes = freeze.thaw_leftovers(config)
    # A corrupt record is repair's own finding, not a partial snapshot.
    for record in list_snapshots(config, partial=True, on_corrupt=lambda *_: None):
        if record.ready:
            continue
        try:
            with lock(config, record.name, wait=0):
                notes.extend(f"removed partial snapshot file {path}"
                             for path in discard_partial(config, record.name))
        except Busy:
            continue
    return notes


# ---- snapshot, delete ----------------------------------------------------------------------------

def snapshot(config: Config, volume_id: str, name: str, call: CallInfo, *,
             progress: Progress | None = None, fields: dict | None = None) -> Snapshot:
    """Take snapshot `name` of volume `volume_id`, mounted or not; return its record (with
    `fields`, a front end's own). A repeat for the same volume returns the snapshot taken."""
    from flexvol.core.options import check_volume_id

    check_volume_id(volume_id)
    check_name(name)
    call.volume_id = volume_id
    ensure_dir(config)
    call.notes.extend(clean_leftovers(config))
    with state.VolumeLock(config, volume_id, wait=30), lock(config, name):
        existing = load_snapshot(config, name)
        if existing is not None and existing.ready:
            if existing.source_volume == volume_id:
                call.notes.append(f"snapshot {name} exists already")
                return existing
            raise Refused(f"snapshot {name} already exists, of volume {existing.source_volume}",
                          "choose another name, or delete that snapshot first")
        call.notes.extend(f"removed partial snapshot file {path}" for path in discard_partial(config, name))
        source = copyable_source(config, volume_id)
        path = config.backing_file(volume_id)
        check_room(config, allocated_bytes(path), f"snapshot {name} of volume {volume_id}")
        record = Snapshot(name, volume_id, os.stat(path).st_size, state.now())
        record.fs_type = (source.formatted or {}).get("fs_type")
        record.uuid = (source.formatted or {}).get("uuid")
        if source.block:
            record.block = True
        record.set_fields(fields or {})
        _save(config, record)
        checkpoint("snapshot-claimed")
        try:
            with Quiesced(config, source) as frozen:
                record.frozen = frozen.frozen
                record.method = filecopy.copy_file(path, snapshot_file(config, name), progress=progress)
                checkpoint("copied")
            record.ready = True
            _save(config, record)
            checkpoint("snapshot-ready")
        except BaseException:
            discard_partial(config, name)
            raise
        call.notes.append(f"snapshot {name} of {volume_id} taken by {record.method}"
                          + (" while frozen" if record.frozen else ""))
        return record


def delete_snapshot(config: Config, name: str, call: CallInfo) -> list[str]:
    """Remove a snapshot's file and record; the paths removed. Volumes restored from it are
    independent files and stay."""
    check_name(name)
    ensure_dir(config)
    with lock(config, name):
        try:
            record = load_snapshot(config, name)
        except StateCorrupt:
            record = None  # an unreadable record is deleted with its file
        if record is None and not any(os.path.exists(path) for path in
                                      (snapshot_file(config, name), record_path(config, name))):
            raise Refused(f"snapshot {name} does not exist", "see 'flexvol snapshot ls'")
        call.volume_id = record.source_volume if record is not None else ""
        removed = [path for path in (snapshot_file(config, name), record_path(config, name))
                   if state.remove(path, durable=True)]
        call.notes.extend(f"removed {path}" for path in removed)
        return removed


def copyable_source(config: Config, volume_id: str) -> state.Record:
    """The record of a volume that can be copied: one holding its filesystem, or a raw block
    volume (its bytes are its content, from its first one)."""
    record = state.load_record(config, volume_id)
    path = config.backing_file(volume_id)
    if record is None or not os.path.exists(path):
        raise Refused(f"volume {volume_id} does not exist", "see 'flexvol ls'")
    if record.restoring:
        raise Refused(f"volume {volume_id} is still being restored", "retry once that finishes")
    if not record.formatted and not record.block:
        raise Refused(f"volume {volume_id} holds no filesystem yet, so there is nothing to copy",
                      "mount it once first")
    return record


class Quiesced:
    """`with Quiesced(config, record):` the volume's content is whole on its backing file
    inside: a mounted filesystem frozen (freeze.py); a raw block volume, which has nothing to
    freeze, gets its loop devices' buffers written back (blockflush.py) before the copy."""

    def __init__(self, config: Config, record: state.Record) -> None:
        self.config = config
        self.record = record
        self.frozen = False
        self._freeze: freeze.Frozen | None = None

    def __enter__(self) -> Quiesced:
        if self.record.block:
            from flexvol.core import blockflush

            blockflush.flush_volume(self.config, self.record.volume_id)
            return self
        self._freeze = freeze.Frozen(self.config, self.record.volume_id)
        self.frozen = bool(self._freeze.__enter__().mount_point)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._freeze is not None:
            self._freeze.__exit__(*exc)


def check_room(config: Config, need: int, what: str) -> None:
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
