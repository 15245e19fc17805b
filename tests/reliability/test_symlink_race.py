"""A parent of the mount dir swapped between a real dir and a symlink into the data root while
the driver mounts (the race that once mounted a volume over <data root>/volumes and left it
immutable). Every try must end with the volume mounted on the real dir or refused, never
anything mounted in the data root, never a guard left on its dirs, nothing leaked."""

from __future__ import annotations

import ctypes
import os
import threading
import time
from pathlib import Path

from flexvol.core import kernel
from tests.helpers.driver import options
from tests.reliability.harness import FIGURES, Harness, is_immutable, scale

SCENARIO = "symlink race on the mount dir's parent"
AT_FDCWD = -100
RENAME_EXCHANGE = 2
_renameat2 = ctypes.CDLL(None, use_errno=True).renameat2


class Swapper:
    """Keeps renaming `swap` between a real dir (holding `volumes/`) and a symlink to `link_to`."""

    def __init__(self, mnt: Path, link_to: Path) -> None:
        self.swap = mnt / "swap"
        self.link = mnt / "link"
        (self.swap / "volumes").mkdir(parents=True)
        self.link.symlink_to(link_to)
        self.swaps = 0
        self.pause = threading.Event()
        self.paused = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _exchange(self) -> None:
        # renameat2(RENAME_EXCHANGE): `swap` is never missing, so the driver never finds a gap
        # to make a dir of its own in.
        if _renameat2(AT_FDCWD, os.fsencode(self.swap), AT_FDCWD, os.fsencode(self.link),
                      RENAME_EXCHANGE) != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))

    def _run(self) -> None:
        while not self.stop.is_set():
            if self.pause.is_set():
                self.paused.set()
                time.sleep(0.001)
                continue
            self.paused.clear()
            self._exchange()   # the symlink at `swap`, the real dir at `link`
            time.sleep(0.0002)
            self._exchange()   # the real dir back
            self.swaps += 1
            time.sleep(0.0002)

    def hold_still(self) -> None:
        """Pause with the real dir at `swap`."""
        self.pause.set()
        self.paused.clear()
        assert self.paused.wait(5)

    def go_on(self) -> None:
        self.pause.clear()


def test_symlink_race_never_mounts_into_the_data_root(harness: Harness) -> None:
    tries = scale(100, 500)
    harness.must("mount", harness.dir("first"), options("race"))  # made and formatted once
    harness.must("unmount", harness.dir("first"))
    root = harness.root
    swapper = Swapper(harness.base / "mnt", root)
    target = str(swapper.swap / "volumes")
    swapper.thread.start()
    escapes = mounted = refused = 0
    try:
        for _ in range(tries):
            outcome = harness.raw("mount", target, options("race"))
            assert outcome.status in ("Success", "Failure"), outcome.output
            assert "internal error" not in outcome.message, outcome.message
            swapper.hold_still()
            ours = [m for m in kernel.read_mounts()
                    if kernel.loop_backing_file(m.source) == str(harness.backing_file("race"))]
            if any(m.mount_point.startswith(str(root)) for m in ours):
                escapes += 1
            if is_immutable(root / "volumes") or is_immutable(root):
                escapes += 1
            if outcome.status == "Success":
                mounted += 1
                assert [m.mount_point for m in ours] == [target], ours
                harness.must("unmount", target)
            else:
                refused += 1
                assert ours == [], (outcome.message, ours)
            assert harness.loops() == [] or outcome.status == "Success"
            swapper.go_on()
    finally:
        swapper.stop.set()
        swapper.thread.join(10)
    assert not (root / "volumes" / "lost+found").exists()
    FIGURES.put(SCENARIO, "tries", tries)
    FIGURES.put(SCENARIO, "mounted on the real dir", mounted)
    FIGURES.put(SCENARIO, "refused", refused)
    FIGURES.put(SCENARIO, "parent swaps", swapper.swaps)
    FIGURES.put(SCENARIO, "escapes", escapes)
    assert escapes == 0
    assert harness.loops() == []
    assert refused > 0 and mounted > 0, "the swap never hit one of the two states"
