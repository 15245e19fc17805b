"""Which namespace a volume belongs to, and the operator's choice to share it (README, Threat
model). The driver records the owner at the first mount from a pod (volume.check_namespace);
the provisioner records the claim's namespace when it makes the volume."""

from __future__ import annotations

from flexvol.core import state
from flexvol.core.config import Config
from flexvol.core.errors import Refused


def set_shareable(config: Config, volume_id: str, shareable: bool) -> state.Record:
    """Let pods of every namespace mount the volume (or only its owner's again); the record."""
    with state.VolumeLock(config, volume_id, wait=10):
        record = state.load_record(config, volume_id)
        if record is None:
            raise Refused(f"volume {volume_id} has no record on this node", "see 'flexvol ls'")
        record.shareable = True if shareable else None
        state.save_record(config, record)
        return record
