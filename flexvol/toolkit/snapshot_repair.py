"""What killed snapshot, restore and clone calls can leave, found and fixed for `flexvol repair`:
a volume left frozen (its pod's writes block), a half-made snapshot, an unfinished restore."""

from __future__ import annotations

from flexvol.core import freeze, restore, snapshots, state
from flexvol.core.config import Config
from flexvol.core.errors import Refused
from flexvol.toolkit.repair import Finding

FROZEN_VOLUME = "frozen-volume"
PARTIAL_SNAPSHOT = "partial-snapshot"
UNFINISHED_RESTORE = "unfinished-restore"
KINDS = frozenset({FROZEN_VOLUME, PARTIAL_SNAPSHOT, UNFINISHED_RESTORE})


def findings(config: Config) -> list[Finding]:
    found = []
    for volume_id in freeze.frozen_volumes(config):
        marker = state.read_json(freeze.marker_path(config, volume_id)) or {}
        where = marker.get("mount_point") or "its mount"
        found.append(Finding(FROZEN_VOLUME, volume_id, freeze.marker_path(config, volume_id),
                             f"a snapshot or clone froze the filesystem at {where} (pid {marker.get('pid')}) "
                             "and did not thaw it: its pod's writes wait",
                             f"thaw {where} once no call holds the volume's lock"))
    for record in snapshots.list_snapshots(config, partial=True, on_corrupt=lambda *_: None):
        if not record.ready:
            found.append(Finding(PARTIAL_SNAPSHOT, record.source_volume,
                                 snapshots.record_path(config, record.name),
                                 f"snapshot {record.name} was never finished (its record says not ready)",
                                 f"remove its partial file and record (snapshot {record.name})"))
    for volume_id in restore.unfinished_restores(config):
        found.append(Finding(UNFINISHED_RESTORE, volume_id, snapshots.partial_file(config, volume_id),
                             f"volume {volume_id} was being copied from a snapshot or volume, unfinished",
                             "remove the unfinished copy, its file and record (the source is untouched)"))
    return found


def apply(config: Config, finding: Finding) -> str:
    """Act on one finding under the right lock; what was done."""
    if finding.kind == FROZEN_VOLUME:
        with state.VolumeLock(config, finding.volume_id, wait=10):
            return freeze.thaw(config, finding.volume_id) or "nothing to do: not frozen any more"
    if finding.kind == PARTIAL_SNAPSHOT:
        record = state.read_json(finding.subject) or {}
        name = str(record.get("name") or "")
        if not name:
            return "nothing to do: the record is gone"
        with snapshots.lock(config, name):
            removed = snapshots.discard_partial(config, name)
        return f"removed {', '.join(removed)}" if removed else "nothing to do: it was finished meanwhile"
    if finding.kind == UNFINISHED_RESTORE:
        with state.VolumeLock(config, finding.volume_id, wait=10):
            notes = restore.discard_restore(config, finding.volume_id)
        return "; ".join(notes) if notes else "nothing to do: it was finished meanwhile"
    raise Refused(f"{finding.kind}: not a snapshot finding")
