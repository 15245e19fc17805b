"""How the agent deletes one volume on this node: the toolkit's delete (`flexvol delete`), which
refuses while the volume has a loop device, a mount or a node attachment.

Kept as its own small function so the agent's contract stays `(config, volume_id) -> bool`.
"""

from __future__ import annotations

import os

from flexvol.core import runner, state
from flexvol.core.config import Config
from flexvol.core.options import check_volume_id
from flexvol.toolkit import lifecycle


def delete_volume(config: Config, volume_id: str) -> bool:
    """Delete the volume; False when there was nothing to delete (a PV whose pod never started
    on this node leaves no file behind). Raises Refused while it is in use."""
    check_volume_id(volume_id)
    if not os.path.isdir(config.data_root):
        return False
    if state.load_record(config, volume_id) is None and not os.path.exists(config.backing_file(volume_id)):
        return False
    with runner.call():  # one call each: the long-running agent keeps no command list between them
        return bool(lifecycle.delete(config, volume_id))
