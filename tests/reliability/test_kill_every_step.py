"""Scenario 2, a kill at every step: SIGKILL the driver at every step boundary of every verb that
changes state, then retry the same verb and check the invariants.

Driven by the test-only hooks of flexvol/core/faults.py: one traced run per verb learns the steps it
passes (FLEXVOL_TEST_TRACE), then one run per step is killed there (FLEXVOL_TEST_KILL_AT).
The quick sample kills at the first, a middle and the last step of each verb.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.driver import options
from tests.reliability.harness import (
    FIGURES,
    FULL,
    Harness,
    is_immutable,
    journal_tracebacks,
    leaks,
    mounts_at,
    settled_loops,
)

PAYLOAD = os.urandom(256 << 10)
FS_GROUP = {"kubernetes.io/mounterArgs.FsGroup": "2000"}
SIZE = "48Mi"
GROWN = str(64 << 20)


@dataclass
class Scenario:
    name: str
    attach: bool
    setup: Callable[[Harness], dict]
    call: Callable[[Harness], list[str]]
    check: Callable[[Harness, dict], None]
    # after the killed call, the kubelet may also give up on the pod and tear it down instead
    teardown: Callable[[Harness], list[str]] | None = None


def hooks(harness: Harness, **extra: str) -> dict[str, str]:
    return {"FLEXVOL_TEST_HOOKS": "1", **extra}


def write_payload(directory: str) -> None:
    path = Path(directory, "payload.bin")
    path.write_bytes(PAYLOAD)
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)


def assert_payload(directory: str) -> None:
    assert Path(directory, "payload.bin").read_bytes() == PAYLOAD, f"data lost in {directory}"


# ---- setups and checks -------------------------------------------------------------------------

def nothing(harness: Harness) -> dict:
    return {}


def idle_volume(harness: Harness) -> dict:
    first = harness.dir("seed")
    harness.must("mount", first, options("v1", size=SIZE))
    write_payload(first)
    harness.must("unmount", first)
    return {"uuid": harness.uuid("v1")}


def mounted_volume(harness: Harness) -> dict:
    target = harness.dir("p1")
    harness.must("mount", target, options("v1", size=SIZE))
    write_payload(target)
    return {"uuid": harness.uuid("v1"), "total": os.statvfs(target).f_blocks}


XFS_SIZE = "300Mi"
XFS_GROWN = str(320 << 20)


def mounted_xfs(harness: Harness) -> dict:
    # xfs, not ext4: online resize2fs needs CAP_SYS_RESOURCE, which some test machines drop.
    target = harness.dir("p1")
    harness.must("mount", target, options("v1", size=XFS_SIZE, fs="xfs"))
    write_payload(target)
    return {"uuid": harness.uuid("v1"), "total": os.statvfs(target).f_blocks}


def check_grown_online(harness: Harness, before: dict) -> None:
    target = harness.dir("p1")
    assert harness.backing_file("v1").stat().st_size == int(XFS_GROWN)
    assert harness.uuid("v1") == before["uuid"], "volume formatted twice"
    assert len(harness.loops()) == 1
    assert os.statvfs(target).f_blocks > before["total"], "filesystem did not grow"
    assert_payload(target)


def mounted_device(harness: Harness) -> dict:
    target = harness.dir("global")
    harness.must("mountdevice", target, "flexvol:v1", options("v1", size=SIZE))
    write_payload(target)
    return {"uuid": harness.uuid("v1")}


def check_mounted(target_name: str, *, fresh: bool) -> Callable[[Harness, dict], None]:
    def check(harness: Harness, before: dict) -> None:
        target = harness.dir(target_name)
        here = mounts_at(harness, target)
        assert len(here) == 1 and not here[0].read_only, here
        assert len(harness.loops()) == 1, harness.loops()
        record = harness.record("v1")
        assert record["formatted"]["fs_type"] == "ext4"
        if fresh:
            write_payload(target)
        else:
            assert_payload(target)
            assert record["formatted"]["uuid"] == before["uuid"], "volume formatted twice"
    return check


def check_released(target_name: str) -> Callable[[Harness, dict], None]:
    def check(harness: Harness, before: dict) -> None:
        target = harness.dir(target_name)
        assert not mounts_at(harness, target)
        assert settled_loops(harness) == []
        assert not is_immutable(target), "write guard not lifted after unmount"
        # the volume comes back whole
        again = harness.dir("again")
        harness.must("mount", again, options("v1", size=SIZE))
        assert_payload(again)
        assert harness.uuid("v1") == before["uuid"], "volume formatted twice"
    return check


def check_attached(harness: Harness, before: dict) -> None:
    reply = harness.must("isattached", options("v1", size=SIZE), "node1").reply
    assert reply["attached"] is True


def check_detached(harness: Harness, before: dict) -> None:
    reply = harness.must("isattached", options("v1", size=SIZE), "node1").reply
    assert reply["attached"] is False


def idle_xfs(harness: Harness) -> dict:
    first = harness.dir("seed")
    harness.must("mount", first, options("v1", size=XFS_SIZE, fs="xfs"))
    write_payload(first)
    total = os.statvfs(first).f_blocks
    harness.must("unmount", first)
    return {"uuid": harness.uuid("v1"), "total": total}


def check_grown_offline_xfs(harness: Harness, before: dict) -> None:
    assert harness.backing_file("v1").stat().st_size == int(XFS_GROWN)
    assert harness.uuid("v1") == before["uuid"], "volume formatted twice"
    assert settled_loops(harness) == [] and harness.mounts() == [], "expandfs left its scratch mount or loop"
    assert not any((harness.root / "scratch").glob("*")), "expandfs left its scratch dir"
    target = harness.dir("again")
    harness.must("mount", target, options("v1", size=XFS_SIZE, fs="xfs"))
    assert os.statvfs(target).f_blocks > before["total"], "filesystem did not grow"
    assert_payload(target)


def check_grown_offline(harness: Harness, before: dict) -> None:
    assert harness.backing_file("v1").stat().st_size == int(GROWN)
    assert harness.uuid("v1") == before["uuid"], "volume formatted twice"
    assert settled_loops(harness) == [], "expandfs of an idle volume left its loop device"
    target = harness.dir("again")
    harness.must("mount", target, options("v1", size=SIZE))
    stats = os.statvfs(target)
    assert stats.f_blocks * stats.f_frsize > 48 << 20, "filesystem did not grow"
    assert_payload(target)


def attached_pv(harness: Harness) -> dict:
    harness.must("attach", options("v1", size=SIZE), "node1")
    return {}


SCENARIOS = [
    Scenario("mount (new volume)", False, nothing,
             lambda h: ["mount", h.dir("p1"), options("v1", size=SIZE, **FS_GROUP)],
             check_mounted("p1", fresh=True),
             teardown=lambda h: ["unmount", h.dir("p1")]),
    Scenario("mount (existing volume)", False, idle_volume,
             lambda h: ["mount", h.dir("p1"), options("v1", size=SIZE)], check_mounted("p1", fresh=False),
             teardown=lambda h: ["unmount", h.dir("p1")]),
    Scenario("unmount", False, mounted_volume, lambda h: ["unmount", h.dir("p1")], check_released("p1")),
    Scenario("mountdevice", True, nothing,
             lambda h: ["mountdevice", h.dir("global"), "flexvol:v1", options("v1", size=SIZE)],
             check_mounted("global", fresh=True),
             teardown=lambda h: ["unmountdevice", h.dir("global")]),
    Scenario("unmountdevice", True, mounted_device, lambda h: ["unmountdevice", h.dir("global")],
             check_released("global")),
    Scenario("attach", True, nothing, lambda h: ["attach", options("v1", size=SIZE), "node1"],
             check_attached),
    Scenario("detach", True, attached_pv, lambda h: ["detach", "pv-v1", "node1"], check_detached),
    Scenario("waitforattach", True, nothing,
             lambda h: ["waitforattach", "flexvol:v1", options("v1", size=SIZE)],
             lambda h, before: None),
    Scenario("expandfs (mounted)", False, mounted_xfs,
             lambda h: ["expandfs", options("v1", size=XFS_SIZE, fs="xfs"), "flexvol:v1", h.dir("p1"),
                        XFS_GROWN, XFS_SIZE],
             check_grown_online),
    Scenario("expandfs (idle)", False, idle_volume,
             lambda h: ["expandfs", options("v1", size=SIZE), "flexvol:v1", h.dir("p1"), GROWN, SIZE],
             check_grown_offline),
    Scenario("expandfs (idle xfs, scratch mount)", False, idle_xfs,
             lambda h: ["expandfs", options("v1", size=XFS_SIZE, fs="xfs"), "flexvol:v1", h.dir("p1"),
                        XFS_GROWN, XFS_SIZE],
             check_grown_offline_xfs),
]


def learn_steps(make_harness: Callable[..., Harness], scenario: Scenario) -> list[str]:
    harness = make_harness("trace", attach=scenario.attach)
    before = scenario.setup(harness)
    trace = harness.base / "trace"
    harness.must(*scenario.call(harness), env=hooks(harness, FLEXVOL_TEST_TRACE=str(trace)))
    scenario.check(harness, before)
    steps: list[str] = []
    for step in trace.read_text().split():
        if step not in steps:
            steps.append(step)
    teardown(harness)
    return steps


def teardown(harness: Harness) -> None:
    """Release everything through the driver, the way the kubelet would, and check for leaks."""
    for mount in reversed(harness.mounts()):
        verb = "unmountdevice" if mount.mount_point.endswith("/global") else "unmount"
        harness.must(verb, mount.mount_point)
    assert not leaks(harness), leaks(harness)
    assert not journal_tracebacks(harness), journal_tracebacks(harness)


def sample(steps: list[str]) -> list[str]:
    if FULL or len(steps) <= 3:
        return steps
    return [steps[0], steps[len(steps) // 2], steps[-1]]


def kill_and_retry(make_harness: Callable[..., Harness], scenario: Scenario, step: str,
                   then: str = "retry") -> None:
    harness = make_harness(step, attach=scenario.attach)
    before = scenario.setup(harness)
    killed = harness.raw(*scenario.call(harness), env=hooks(harness, FLEXVOL_TEST_KILL_AT=step))
    assert killed.killed, f"the driver was not killed at {step}: {killed.output}"
    assert not killed.problems, killed.problems
    if then == "retry":
        harness.must(*scenario.call(harness))
        scenario.check(harness, before)
    else:
        assert scenario.teardown is not None
        target = scenario.teardown(harness)[1]
        harness.must(*scenario.teardown(harness))
        assert not mounts_at(harness, target) and settled_loops(harness) == []
        assert not is_immutable(target), "write guard left on a dir the kubelet must remove"
        if os.path.isdir(target):
            os.rmdir(target)  # what the kubelet does after unmount
    teardown(harness)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_kill_at_every_step_then_retry_converges(make_harness: Callable[..., Harness],
                                                 scenario: Scenario) -> None:
    steps = learn_steps(make_harness, scenario)
    assert "dispatched" in steps and "replied" in steps, steps
    chosen = sample(steps)
    converged = 0
    failures = []
    for step in chosen:
        for then in ("retry", "teardown") if scenario.teardown else ("retry",):
            try:
                kill_and_retry(make_harness, scenario, step, then)
                converged += 1
            except AssertionError as error:
                failures.append(f"{step} then {then}: {error}")
            FIGURES.add("kill at every step", "kill runs")
    FIGURES.put("kill at every step", f"steps of {scenario.name}", f"{len(chosen)}/{len(steps)}: "
                + " ".join(chosen))
    FIGURES.add("kill at every step", "kill points covered", len(chosen))
    FIGURES.add("kill at every step", "kill points known", len(steps))
    FIGURES.add("kill at every step", "verbs covered")
    FIGURES.add("kill at every step", "converged runs", converged)
    assert not failures, "\n".join(failures)


def test_expandfs_killed_after_attaching_a_loop_device_leaves_none_after_retry(make_harness) -> None:
    """Regression, scenario 2 (a kill at every step): the retry of an offline expandfs found the
    loop device the killed call had attached, took it for one in use and never released it."""
    scenario = next(item for item in SCENARIOS if item.name == "expandfs (idle)")
    kill_and_retry(make_harness, scenario, "loop-attached")
