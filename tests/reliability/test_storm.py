"""Scenario 4, a storm of callers: many concurrent callers on many volumes mixing mount, unmount
and repeat calls for a bounded time, then 8 callers at once on one volume and one pod dir. At
the end every pod dir is in the state its last completed call asked for, with one loop device
per volume in use and one mount per mounted pod dir, and no data written in between is lost.
"""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

from tests.helpers.driver import options
from tests.reliability.harness import (
    FIGURES,
    Harness,
    Outcome,
    is_immutable,
    journal_tracebacks,
    leaks,
    mounts_at,
    scale,
    settled_loops,
)

SIZE = "40Mi"


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = 0
        self.refusals: list[str] = []
        self.bad: list[str] = []

    def add(self, outcome: Outcome) -> None:
        with self.lock:
            self.calls += 1
            if outcome.problems or "internal error" in outcome.message:
                self.bad.append(f"{outcome.argv[1:3]}: {outcome.problems} {outcome.output[:300]}")
            elif outcome.status == "Failure":
                self.refusals.append(outcome.message[:200])


def test_storm_of_callers_converges_to_the_last_call_of_each_pod(harness: Harness) -> None:
    volumes = scale(8, 16)
    callers = scale(32, 64)
    seconds = scale(10, 60)
    tally = Tally()
    expected: dict[int, bool] = {}
    written: dict[str, dict[str, bytes]] = {f"s{v}": {} for v in range(volumes)}
    written_lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def caller(index: int) -> None:
        rng = random.Random(index)
        volume_id = f"s{index % volumes}"
        target = harness.dir(f"pod{index}")
        mount_call = ["mount", target, options(volume_id, size=SIZE)]
        mounted = False
        last = mount_call
        count = 0
        while time.monotonic() < deadline:
            choice = rng.random()
            if choice < 0.2:
                argv = last  # the kubelet repeats a call
            elif choice < 0.6:
                argv = mount_call
            else:
                argv = ["unmount", target]
            outcome = harness.raw(*argv)
            tally.add(outcome)
            last = argv
            if outcome.status != "Success":
                continue
            mounted = argv[0] == "mount"
            if mounted:
                count += 1
                name = f"c{index}-{count}.bin"
                payload = os.urandom(4096)
                path = Path(target, name)
                path.write_bytes(payload)
                fd = os.open(path, os.O_RDONLY)
                os.fsync(fd)
                os.close(fd)
                with written_lock:
                    written[volume_id][name] = payload
        expected[index] = mounted

    threads = [threading.Thread(target=caller, args=(index,)) for index in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    mismatches = []
    for index in range(callers):
        target = harness.dir(f"pod{index}")
        here = mounts_at(harness, target)
        if len(here) != (1 if expected[index] else 0):
            mismatches.append(f"pod{index}: expected mounted={expected[index]}, mounts={len(here)}")
        if not expected[index] and os.path.isdir(target) and is_immutable(target):
            mismatches.append(f"pod{index}: unmounted but still write-guarded")
    in_use = {f"s{index % volumes}" for index in range(callers) if expected[index]}
    settled_loops(harness)  # deferred detaches of the last unmounts complete
    for volume_index in range(volumes):
        volume_id = f"s{volume_index}"
        loops = [device for device, backing in _loops(harness).items()
                 if backing.endswith(f"/{volume_id}.img")]
        if len(loops) != (1 if volume_id in in_use else 0):
            mismatches.append(f"{volume_id}: in use={volume_id in in_use}, loop devices={loops}")
    FIGURES.put("storm", "callers x volumes x seconds", f"{callers} x {volumes} x {seconds}")
    FIGURES.add("storm", "calls", tally.calls)
    FIGURES.add("storm", "clean refusals", len(tally.refusals))
    FIGURES.add("storm", "failures other than clean refusals", len(tally.bad))
    FIGURES.add("storm", "end-state mismatches", len(mismatches))

    # nothing written during the storm is lost; each volume was formatted once
    lost = 0
    for volume_id, files in written.items():
        check = harness.dir(f"check-{volume_id}")
        harness.must("mount", check, options(volume_id, size=SIZE))
        for name, payload in files.items():
            if Path(check, name).read_bytes() != payload:
                lost += 1
        harness.must("unmount", check)
    FIGURES.add("storm", "files lost", lost)
    for index in range(callers):
        harness.must("unmount", harness.dir(f"pod{index}"))
    assert not tally.bad, "\n".join(tally.bad[:20])
    assert not mismatches, "\n".join(mismatches)
    assert lost == 0
    assert not leaks(harness) and not journal_tracebacks(harness)


def _loops(harness: Harness) -> dict[str, str]:
    from flexvol.core import kernel

    return {device: backing for device, backing in kernel.loop_devices().items()
            if backing.startswith(str(harness.root))}


def test_eight_callers_on_one_volume_and_pod_dir(harness: Harness) -> None:
    rounds = scale(6, 24)
    rng = random.Random(8)
    target = harness.dir("shared")
    tally = Tally()
    mismatches = []
    payload = os.urandom(8192)
    for round_index in range(rounds):
        verb = rng.choice(["mount", "unmount"])
        argv = ["mount", target, options("one", size=SIZE)] if verb == "mount" else ["unmount", target]
        barrier = threading.Barrier(8)

        def call(argv: list[str] = argv, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            tally.add(harness.raw(*argv))

        threads = [threading.Thread(target=call) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        here = mounts_at(harness, target)
        wanted = 1 if verb == "mount" else 0
        loops = harness.loops() if wanted else settled_loops(harness)
        if len(here) != wanted or len(loops) != wanted:
            mismatches.append(f"round {round_index} {verb}: mounts={len(here)} loops={harness.loops()}")
        if verb == "mount":
            if Path(target, "keep").exists():
                if Path(target, "keep").read_bytes() != payload:
                    mismatches.append(f"round {round_index}: data changed")
            else:
                Path(target, "keep").write_bytes(payload)
        elif os.path.isdir(target) and is_immutable(target):
            mismatches.append(f"round {round_index}: unmounted dir still write-guarded")
    FIGURES.add("storm", "same-dir rounds of 8 callers", rounds)
    FIGURES.add("storm", "calls", tally.calls)
    FIGURES.add("storm", "clean refusals", len(tally.refusals))
    FIGURES.add("storm", "failures other than clean refusals", len(tally.bad))
    FIGURES.add("storm", "end-state mismatches", len(mismatches))
    harness.must("unmount", target)
    assert not tally.bad and not tally.refusals, tally.bad + tally.refusals
    assert not mismatches, mismatches
    assert not leaks(harness)
