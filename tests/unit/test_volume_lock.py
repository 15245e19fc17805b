"""The volume lock: exclusive, bounded wait, and a Busy message naming the holder."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
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
        with pytest.raises(Busy, match=busy):
            in_another_thread(lambda: state.VolumeLock(config, "v1", wait=0.05).__enter__())
    with state.VolumeLock(config, "v1", wait=0.05):
        pass  # released on exit


def in_another_thread(action: Callable[[], object]) -> None:
    """Run `action` in a second thread; re-raise what it raised."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            action()
        except BaseException as error:
            raised.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if raised:
        raise raised[0]


def test_a_holder_that_takes_its_own_lock_again_does_not_wait_on_itself(tmp_path: Path) -> None:
    """Defect: code holding a volume's lock (repair acting on a finding) that called a step
    taking the same lock waited on itself until Busy, so repair special-cased its own volume."""
    config = Config(str(tmp_path))
    state.ensure_dirs(config)
    with state.VolumeLock(config, "v1"):
        with state.VolumeLock(config, "v1", wait=0.05):
            pass
        # still held after the inner exit: another thread is kept out
        with pytest.raises(Busy):
            in_another_thread(lambda: state.VolumeLock(config, "v1", wait=0.05).__enter__())
    # released by the outer exit
    in_another_thread(lambda: take_and_release(config, "v1"))


def take_and_release(config: Config, volume_id: str) -> None:
    with state.VolumeLock(config, volume_id, wait=0.05):
        pass
