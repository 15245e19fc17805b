"""A pool filling up under running volumes, thin and thick.

Regression for the defect "the capacity budget counts the pool's size, not its free space":
volumes were made past the pool's real free space, and writes into them then failed inside
the pod with EIO and damaged their filesystems. Here a small tmpfs pool that already holds
other data fills up in three phases while a thick volume is written to without pause:

1. volumes fill it: thin and thick volumes are asked for in turn, each one given is written to
   its full room at once; every write must succeed (a volume is given only what is really
   free) and the first ones past the real free space are refused with the figures;
2. other data grows until the pool has nothing left beyond what thin volumes were promised:
   every volume keeps working, and new volumes are refused;
3. other data takes the rest. Thin volumes' promises are now unbacked (ext4 writes inode
   tables lazily, into the file's holes, even with the pod idle): the pool check fails, and
   their pods stop first. The thick volumes keep accepting writes with the pool at 0 free.

Afterwards every filesystem checks clean (e2fsck -fn).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import subprocess
import threading
import time
from pathlib import Path

from flexvol.core import budget
from flexvol.core.config import Config
from flexvol.toolkit import doctor
from tests.helpers.driver import options
from tests.reliability.harness import (
    FIGURES,
    Harness,
    Outcome,
    journal_tracebacks,
    leaks,
    scale,
    settled_loops,
)

MiB = 1 << 20
POOL = "256m"
THICK = "48Mi"
SIZE = "24Mi"
SIZE_BYTES = 24 * MiB
STEP = 8 * MiB
SCENARIO = "pool filling up"


def tmpfs_pool(harness: Harness) -> None:
    harness.root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={POOL},mode=0700", "flexvol-test-pool",
                    str(harness.root)], check=True)


def grow_other_data(path: Path, amount: int) -> bool:
    """Append `amount` bytes of data that is not a volume; False once the pool is full."""
    chunk = b"\x5a" * MiB
    with open(path, "ab", buffering=0) as handle:
        try:
            while amount > 0:
                amount -= handle.write(chunk[:min(MiB, amount)])
        except OSError as error:
            assert error.errno == errno.ENOSPC, error
            return False
        finally:
            # write back now: free space must show it before the next measurement
            os.fsync(handle.fileno())
    return True


def rewrite(directory: str, prefix: str, first: int) -> list[str]:
    """Delete two of the files a volume was filled with and write 2 MiB anew in their place."""
    for index in (first, first + 1):
        Path(directory, f"f{index}.bin").unlink()
    return fill_volume(directory, 2 * MiB, prefix)


def fill_volume(directory: str, amount: int, prefix: str = "f") -> list[str]:
    """Write `amount` bytes in 1 MiB files, each fsynced and read back; the errors met."""
    errors = []
    block = os.urandom(MiB)
    for index in range(amount // MiB):
        try:
            with open(Path(directory, f"{prefix}{index}.bin"), "wb") as handle:
                handle.write(block)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as error:
            errors.append(f"{directory}/{prefix}{index}.bin: {error.strerror}")
    if not errors:
        for index in range(amount // MiB):
            if Path(directory, f"{prefix}{index}.bin").read_bytes() != block:
                errors.append(f"{directory}/{prefix}{index}.bin: read back differs")
    return errors


class ThickWriter(threading.Thread):
    """Rewrites 24 files of 1 MiB in the thick volume round and round, fsync after each."""

    def __init__(self, directory: str) -> None:
        super().__init__(daemon=True)
        self.directory = directory
        self.stop = threading.Event()
        self.writes = 0
        self.errors: list[str] = []
        self.digests: dict[str, str] = {}

    def run(self) -> None:
        while not self.stop.is_set():
            name = f"w{self.writes % 24}.bin"
            data = os.urandom(MiB)
            try:
                with open(Path(self.directory, name), "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
            except OSError as error:
                self.errors.append(f"{name}: {error.strerror}")
                time.sleep(0.05)
                continue
            self.digests[name] = hashlib.sha256(data).hexdigest()
            self.writes += 1

    def intact(self) -> bool:
        return all(hashlib.sha256(Path(self.directory, name).read_bytes()).hexdigest() == digest
                   for name, digest in self.digests.items())


def fsck_clean(backing: Path) -> bool:
    done = subprocess.run(["e2fsck", "-fn", str(backing)], capture_output=True, check=False)
    return done.returncode == 0


def refused_with_figures(outcome: Outcome, harness: Harness, volume_id: str) -> None:
    message = outcome.message
    assert not outcome.problems, outcome.problems
    assert outcome.status == "Failure" and "space" in message and "; " in message, outcome.output
    assert "internal error" not in message, message
    assert not re.search(r"\d{5,}", re.sub(r"/\S*", "", message)), message
    assert not harness.backing_file(volume_id).exists()


def test_pool_filling_up_under_thin_and_thick_volumes(harness: Harness) -> None:
    tmpfs_pool(harness)
    config = Config(str(harness.root))
    other = harness.root / "images-and-logs"
    assert grow_other_data(other, 64 * MiB)
    writer_dir = harness.dir("writer")
    harness.must("mount", writer_dir, options("writer", size=THICK))  # thick: the default
    writer = ThickWriter(writer_dir)
    writer.start()
    given: dict[str, str] = {}
    refused: dict[str, int] = {"thin": 0, "thick": 0}
    volume_errors: list[str] = []
    try:
        # 1. volumes fill the pool
        for step in range(100):
            allocation = ("thin", "thick")[step % 2]
            volume_id = f"{allocation}{step}"
            target = harness.dir(volume_id)
            outcome = harness.raw("mount", target, options(volume_id, size=SIZE, allocation=allocation))
            if outcome.status == "Success":
                given[volume_id] = allocation
                room = os.statvfs(target)
                volume_errors += fill_volume(target, room.f_bavail * room.f_frsize - MiB)
                continue
            refused_with_figures(outcome, harness, volume_id)
            refused[allocation] += 1
            if min(refused.values()) >= 2:
                break
        assert budget.measure(config).available_bytes < SIZE_BYTES
        # 2. other data grows until nothing is left beyond the thin volumes' promises
        while (room := budget.measure(config).available_bytes) > 0:
            assert grow_other_data(other, min(room, STEP))
        for volume_id in given:
            volume_errors += rewrite(harness.dir(volume_id), "late", 0)
        for allocation in ("thin", "thick"):
            volume_id = f"late-{allocation}"
            outcome = harness.raw("mount", harness.dir(volume_id),
                                  options(volume_id, size="8Mi", allocation=allocation))
            refused_with_figures(outcome, harness, volume_id)
            refused[allocation] += 1
        # 3. other data takes the rest: thin promises are unbacked, their pods stop first
        for volume_id, allocation in given.items():
            if allocation == "thin":
                harness.must("unmount", harness.dir(volume_id))
        grow_other_data(other, 1 << 40)
        pool = budget.measure(config)
        assert pool.free_bytes < MiB and pool.unbacked_bytes > 0
        assert doctor.check_space(config)[0].status == doctor.FAIL
        before = writer.writes
        for volume_id, allocation in given.items():
            if allocation == "thick":
                volume_errors += rewrite(harness.dir(volume_id), "full", 2)
        time.sleep(scale(2, 10))
        full_writes = writer.writes - before
    finally:
        writer.stop.set()
        writer.join(30)
    thin = [volume_id for volume_id, allocation in given.items() if allocation == "thin"]
    thick = [volume_id for volume_id, allocation in given.items() if allocation == "thick"]
    FIGURES.put(SCENARIO, "thin / thick volumes given, each written to its full room",
                f"{len(thin)} / {len(thick)}")
    FIGURES.put(SCENARIO, "thin / thick volumes refused past the real free space",
                f"{refused['thin']} / {refused['thick']}")
    FIGURES.put(SCENARIO, "write errors in volumes given", len(volume_errors))
    FIGURES.put(SCENARIO, "thick writer: writes (with the pool at 0 free), errors",
                f"{writer.writes} ({full_writes}), {len(writer.errors)}")
    assert thin and thick and min(refused.values()) >= 3
    assert not volume_errors, volume_errors[:5]
    assert not writer.errors and full_writes > 0, writer.errors[:5]
    intact = writer.intact()
    assert intact

    for volume_id in ["writer", *thick]:
        harness.must("unmount", harness.dir(volume_id))
    unclean = [volume_id for volume_id in ["writer", *given]
               if not fsck_clean(harness.backing_file(volume_id))]
    FIGURES.put(SCENARIO, "filesystems not clean after unmount (e2fsck -fn)", len(unclean))
    FIGURES.put(SCENARIO, "data lost", 0 if not unclean and intact else 1)
    assert not unclean
    assert not journal_tracebacks(harness)
    other.unlink()
    found = leaks(harness, allowed_mounts=1)
    assert not found and settled_loops(harness) == [], (found, harness.loops())
