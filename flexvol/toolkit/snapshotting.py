"""Operator actions on snapshots: take, list, show, delete. Each is one call of the core
(core/snapshots.py), the same a CSI snapshot request runs."""

from __future__ import annotations

from collections.abc import Callable

from flexvol.core import snapshots
from flexvol.core.config import Config
from flexvol.core.errors import Refused
from flexvol.core.journal import CallInfo
from flexvol.core.records import Snapshot

Progress = Callable[[int, int], None]


def take(config: Config, volume_id: str, name: str, progress: Progress | None = None) -> Snapshot:
    return snapshots.snapshot(config, volume_id, name, CallInfo("toolkit:snapshot"), progress=progress)


def delete(config: Config, name: str) -> list[str]:
    return snapshots.delete_snapshot(config, name, CallInfo("toolkit:snapshot-delete"))


def listing(config: Config, volume_id: str = "") -> list[dict]:
    """Ready snapshots as rows: the record's fields, `allocated_bytes` (what its file holds),
    `file`, and whether the source volume still exists."""
    rows = []
    for record in snapshots.list_snapshots(config, volume_id):
        path = snapshots.snapshot_file(config, record.name)
        source = record.source_volume
        exists = bool(source) and snapshots.state.load_record(config, source) is not None
        rows.append({**record.to_json(), "file": path, "allocated_bytes": snapshots.allocated_bytes(path),
                     "source_exists": exists})
    return rows


def show(config: Config, name: str) -> dict:
    snapshots.check_name(name)
    for row in listing(config):
        if row["name"] == name:
            return row
    raise Refused(f"snapshot {name} does not exist", "see 'flexvol snapshot ls'")


def per_volume(config: Config) -> dict[str, tuple[int, int]]:
    """volume id -> (how many ready snapshots, bytes their files hold), for `flexvol ls`."""
    found: dict[str, tuple[int, int]] = {}
    for record in snapshots.list_snapshots(config):
        count, held = found.get(record.source_volume, (0, 0))
        held += snapshots.allocated_bytes(snapshots.snapshot_file(config, record.name))
        found[record.source_volume] = (count + 1, held)
    return found
