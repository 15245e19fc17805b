"""The volume lock: exclusive, bounded wait, and a Busy message naming the holder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flexvol.core import state
from flexvol.core.config import Config
from flexvol.core.errors import Busy


def test_a_second_holder_waits_then_is_told_who_holds_the_lock(tmp_path: Path) -> None:
    config = Config(str(tmp_path))
    state.ensure_dirs(config)
    lock_file = Path(config.lock_path("v1"))
    lock_file.write_text("9999999999999999\n")  # a longer line left by someone else
    with state.VolumeLock(config, "v1"):
        assert lock_file.read_text().splitlines()[0].strip() == str(os.getpid())
        busy = rf"volume v1 is busy: pid {os.getpid()} has held its lock"
        with pytest.raises(Busy, match=busy), state.VolumeLock(config, "v1", wait=0.05):
            pass
    with state.VolumeLock(config, "v1", wait=0.05):
        pass  # released on exit
