"""A snapshot, restore or clone killed (SIGKILL) at each of its steps: after the retry, or after
`flexvol repair --apply`, no volume is left frozen (its mount takes writes again), no half
snapshot is ever listed, and nothing is left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.helpers.cli import flexvol
from tests.helpers.driver import MINIMAL_PATH, Driver, options
from tests.integration.test_snapshots import digest, ok, snapshot_files, write_file

MiB = 1 << 20
RUN_CLI = [sys.executable, "-c", "from flexvol.cli.main import run; run()"]
SNAPSHOT_STEPS = ["snapshot-claimed", "freeze-marked", "frozen", "copy-chunk", "copied", "thawed",
                  "snapshot-ready"]
RESTORE_STEPS = ["restore-claimed", "copy-chunk", "copied", "log-replay-mounted", "uuid-changed",
                 "restore-renamed", "restore-recorded"]
CLONE_STEPS = ["restore-claimed", "freeze-marked", "frozen", "copy-chunk", "copied", "thawed",
               "restore-renamed", "restore-recorded"]
RECOVERIES = ["retry", "repair"]


def killed(driver: Driver, step: str, *args: str) -> int:
    env = {"PATH": MINIMAL_PATH, "FLEXVOL_ROOT": str(driver.root), "FLEXVOL_TEST_HOOKS": "1",
           "FLEXVOL_TEST_KILL_AT": step, "COLUMNS": "200"}
    done = subprocess.run([*RUN_CLI, *args], env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=120, check=False)
    assert done.returncode == -9, (step, done.stdout.decode(), done.stderr.decode())
    return done.returncode


def listed(driver: Driver) -> list[dict]:
    return json.loads(ok(driver, "snapshot", "ls", "-o", "json"))


def repair(driver: Driver) -> None:
    result = flexvol("repair", "--apply", root=str(driver.root))
    assert result.exit_code == 0, result.output
    again = flexvol("repair", root=str(driver.root))
    assert again.exit_code == 0 and "nothing to repair" in again.output, again.output


def assert_writable(mount: str) -> None:
    """A write to the mount finishes: its filesystem is not frozen. A write into a frozen
    filesystem would wait for ever, so it runs in a thread given a deadline."""
    done = threading.Event()

    def write() -> None:
        write_file(Path(mount, "probe"), 4096)
        done.set()

    threading.Thread(target=write, daemon=True).start()
    assert done.wait(20), f"a write to {mount} did not finish: its filesystem is still frozen"


def thaw_own_mount(mount: str) -> None:
    """The test's own safety net, should the software fail: never leave the test's mount frozen."""
    subprocess.run(["fsfreeze", "-u", mount], capture_output=True, check=False)


def assert_no_leftovers(driver: Driver, volumes: set[str]) -> None:
    assert sorted(os.listdir(driver.root / "volumes")) == sorted(f"{v}.img" for v in volumes)
    frozen = driver.root / "frozen"
    assert not frozen.exists() or os.listdir(frozen) == []
    scratch = driver.root / "scratch"
    assert not scratch.exists() or os.listdir(scratch) == []


@pytest.mark.parametrize("recovery", RECOVERIES)
@pytest.mark.parametrize("step", SNAPSHOT_STEPS)
def test_snapshot_killed_at_each_step(driver: Driver, step: str, recovery: str) -> None:
    source = driver.dir("pod")
    driver.ok("mount", source, options("v1"))
    try:
        before = write_file(Path(source, "before"), MiB)
        killed(driver, step, "snapshot", "create", "v1", "s1")
        names = [row["name"] for row in listed(driver)]
        assert names == (["s1"] if step == "snapshot-ready" else []), names
        if recovery == "repair":
            repair(driver)
            assert_writable(source)
            assert snapshot_files(driver) == (["s1.img", "s1.json"] if step == "snapshot-ready" else [])
        ok(driver, "snapshot", "create", "v1", "s1")
        assert_writable(source)
        write_file(Path(source, "after"), MiB)
        ok(driver, "create", "r1", "--from-snapshot", "s1")
        restored = driver.dir("restored")
        driver.ok("mount", restored, options("r1"))
        assert digest(Path(restored, "before")) == before and not Path(restored, "after").exists()
        driver.ok("unmount", restored)
        ok(driver, "snapshot", "delete", "s1", "--yes")
        assert snapshot_files(driver) == []
        assert_no_leftovers(driver, {"v1", "r1"})
    finally:
        thaw_own_mount(source)
    driver.ok("unmount", source)


@pytest.mark.parametrize("recovery", RECOVERIES)
@pytest.mark.parametrize("step", RESTORE_STEPS)
def test_restore_killed_at_each_step(driver: Driver, step: str, recovery: str) -> None:
    """xfs: its restore has every step, the private log replay and the new UUID included."""
    source = driver.dir("pod")
    spec = options("v1", size="320Mi", fs="xfs")
    driver.ok("mount", source, spec)
    data = write_file(Path(source, "data"), MiB)
    ok(driver, "snapshot", "create", "v1", "s1")
    killed(driver, step, "create", "r1", "--from-snapshot", "s1")
    restored = driver.dir("restored")
    r1 = options("r1", size="320Mi", fs="xfs")
    if step != "restore-recorded":
        refused = driver.call("mount", restored, r1)
        # a volume still being restored is never mounted, nor made blank in its place
        assert refused.status == "Failure", refused.output
    if recovery == "repair":
        repair(driver)
        assert_no_leftovers(driver, {"v1", "r1"} if step == "restore-recorded" else {"v1"})
    ok(driver, "create", "r1", "--from-snapshot", "s1")
    record = driver.record("r1")
    assert "restoring" not in record and record["formatted"]["fs_type"] == "xfs"
    driver.ok("mount", restored, r1)  # beside its source: a new UUID
    assert digest(Path(restored, "data")) == data
    driver.ok("unmount", restored)
    driver.ok("unmount", source)
    assert_no_leftovers(driver, {"v1", "r1"})


@pytest.mark.parametrize("recovery", RECOVERIES)
@pytest.mark.parametrize("step", CLONE_STEPS)
def test_clone_of_a_mounted_volume_killed_at_each_step(driver: Driver, step: str, recovery: str) -> None:
    source = driver.dir("pod")
    driver.ok("mount", source, options("v1"))
    try:
        data = write_file(Path(source, "data"), MiB)
        killed(driver, step, "create", "c1", "--from-volume", "v1")
        if recovery == "repair":
            repair(driver)
            assert_writable(source)
            assert_no_leftovers(driver, {"v1", "c1"} if step == "restore-recorded" else {"v1"})
        ok(driver, "create", "c1", "--from-volume", "v1")
        assert_writable(source)
        clone = driver.dir("clone")
        driver.ok("mount", clone, options("c1"))
        assert digest(Path(clone, "data")) == data
        driver.ok("unmount", clone)
        assert_no_leftovers(driver, {"v1", "c1"})
    finally:
        thaw_own_mount(source)
    driver.ok("unmount", source)
