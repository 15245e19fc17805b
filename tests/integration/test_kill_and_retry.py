"""A call killed (SIGKILL) between two steps leaves nothing the retry cannot finish or undo."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers.driver import DRIVER, Driver, options

MOUNT_STEPS = ["target-saved", "file-created", "record-saved", "loop-attached",
               "mkfs-intent-saved", "mkfs-done", "formatted-saved", "mounted"]
UNMOUNT_STEPS = ["unmounted", "loop-detached", "target-removed"]


def killed_call(driver: Driver, step: str, *args: str) -> int:
    env = {**driver.env(), "FLEXVOL_TEST_HOOKS": "1", "FLEXVOL_TEST_KILL_AT": step}
    done = subprocess.run([str(DRIVER), *args], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=120, check=False)
    return done.returncode


@pytest.mark.parametrize("step", MOUNT_STEPS)
def test_mount_killed_at_each_step_then_retried(driver: Driver, step: str) -> None:
    target = driver.dir("pod")
    spec = options("k1")
    assert killed_call(driver, step, "mount", target, spec) == -9
    driver.ok("mount", target, spec)
    assert [m.mount_point for m in driver.mounts()] == [target]
    assert len(driver.loops()) == 1
    Path(target, "f").write_text("after retry")
    uuid = driver.record("k1")["formatted"]["uuid"]
    driver.ok("unmount", target)
    assert driver.mounts() == [] and driver.loops() == []
    driver.ok("mount", target, spec)
    assert Path(target, "f").read_text() == "after retry"
    assert driver.record("k1")["formatted"]["uuid"] == uuid
    driver.ok("unmount", target)


@pytest.mark.parametrize("step", MOUNT_STEPS)
def test_mount_killed_then_the_pod_goes_away(driver: Driver, step: str) -> None:
    """The kubelet may give up on the pod and call unmount instead of retrying the mount."""
    target = driver.dir("pod")
    assert killed_call(driver, step, "mount", target, options("k2")) == -9
    driver.ok("unmount", target)
    assert driver.mounts() == [] and driver.loops() == []


@pytest.mark.parametrize("step", UNMOUNT_STEPS)
def test_unmount_killed_at_each_step_then_retried(driver: Driver, step: str) -> None:
    target = driver.dir("pod")
    driver.ok("mount", target, options("k3"))
    assert killed_call(driver, step, "unmount", target) == -9
    driver.ok("unmount", target)
    assert driver.mounts() == [] and driver.loops() == []
    assert os.listdir(target) == []


def test_interrupted_mkfs_is_finished_with_force(driver: Driver) -> None:
    """A mkfs killed half-way can leave a partial signature; our own intent lets the retry
    redo it (docs/flexvolume.md section 9, step 4), while a foreign signature is never overwritten."""
    target = driver.dir("pod")
    spec = options("k4", size="320Mi", fs="xfs")
    assert killed_call(driver, "mkfs-done", "mount", target, spec) == -9
    assert driver.record("k4")["mkfs_started"]["fs_type"] == "xfs"
    driver.ok("mount", target, spec)
    record = driver.record("k4")
    assert record["formatted"]["fs_type"] == "xfs" and record["mkfs_started"] is None
    driver.ok("unmount", target)
