"""Loop devices bound with the kernel's ioctls, and losetup where those are not available."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from flexvol.core import kernel, loop, loopdev, runner
from tests.conftest import TEST_PREFIX


@pytest.fixture
def backing() -> Iterator[Path]:
    """A sparse 64 MiB file of this test's own; any loop device left on it is detached."""
    base = Path(tempfile.mkdtemp(prefix=f"{TEST_PREFIX}loopdev-", dir="/tmp"))
    path = base / "volume.img"
    path.touch(0o600)
    os.truncate(path, 64 << 20)
    try:
        yield path
    finally:
        for device in kernel.loops_of_file(str(path)):
            subprocess.run(["losetup", "--detach", device], check=False)
        shutil.rmtree(base, ignore_errors=True)


def test_attach_binds_the_file_with_direct_io_and_detach_releases_it(backing: Path) -> None:
    runner.current().history.clear()
    recorded: list[tuple[str | None, str | None]] = []

    def record(chosen: str | None) -> None:
        recorded.append((chosen, chosen and kernel.loop_backing_file(chosen)))

    device = loop._attach_loop(str(backing), record)
    # The device is recorded while it is still unbound, so a call killed after the bind finds it.
    assert recorded == [(device, None)]
    assert kernel.loop_backing_file(device) == str(backing)
    assert kernel.loop_direct_io(device) is True
    listed = subprocess.run(["losetup", "--list", "--noheadings", "--output", "BACK-FILE,DIO", device],
                            capture_output=True, text=True, check=True).stdout.split()
    assert listed == [str(backing), "1"]
    assert runner.current().history[-1][0] == f"ioctl LOOP_CONFIGURE {device} {backing}"

    loop.detach_loop(device)
    assert kernel.loop_backing_file(device) is None
    assert kernel.loops_of_file(str(backing)) == []
    assert runner.current().history[-1][0] == f"ioctl LOOP_CLR_FD {device}"


def test_each_caller_gets_its_own_device(backing: Path) -> None:
    # The same free number can be handed to two callers; LOOP_CONFIGURE lets only one bind it.
    devices = [loop._attach_loop(str(backing), lambda _d: None) for _ in range(3)]
    try:
        assert len(set(devices)) == 3
        assert all(kernel.loop_backing_file(d) == str(backing) for d in devices)
    finally:
        for device in devices:
            loop.detach_loop(device)
    assert kernel.loops_of_file(str(backing)) == []


def test_without_the_ioctl_path_losetup_does_the_same(backing: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loopdev, "LOOP_CONTROL", str(backing.parent / "no-loop-control"))
    runner.current().history.clear()
    recorded: list[str | None] = []
    device = loop._attach_loop(str(backing), recorded.append)
    assert kernel.loop_backing_file(device) == str(backing)
    assert runner.current().history[-1][0].startswith("losetup --find --show --direct-io=on")
    # losetup picks the device itself: "attaching" is recorded before it, the device after.
    assert recorded == [None, device]

    def no_node(device: str) -> None:
        raise loopdev.Unavailable(f"{device} has no device node")

    monkeypatch.setattr(loopdev, "detach", no_node)
    loop.detach_loop(device)
    assert kernel.loop_backing_file(device) is None
    assert runner.current().history[-1][0] == f"losetup --detach {device}"


def test_set_capacity_makes_the_device_take_the_grown_file(backing: Path) -> None:
    device = loop._attach_loop(str(backing), lambda _d: None)
    try:
        assert kernel.block_size_bytes(device) == 64 << 20
        os.truncate(backing, 96 << 20)
        runner.current().history.clear()
        loop.set_loop_capacity(device)
        assert kernel.block_size_bytes(device) == 96 << 20
        assert runner.current().history[-1][0] == f"ioctl LOOP_SET_CAPACITY {device}"
    finally:
        loop.detach_loop(device)
