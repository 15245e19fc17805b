"""Mounts and unmounts made with mount(2) and umount2(2) in-process (mountcall.py), and mount(8)
where an option is more than a flag or the call fails."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from flexvol.core import kernel, loop, mountcall, mounting, runner
from flexvol.core.errors import CommandFailed
from flexvol.core.options import VolumeSpec
from flexvol.core.undo import Undo
from tests.conftest import TEST_PREFIX


@pytest.fixture
def device() -> Iterator[tuple[str, Path]]:
    """A loop device over an ext4 file of this test's own, and a dir to mount it on; whatever
    is left mounted on the dir or bound to the file is released."""
    base = Path(tempfile.mkdtemp(prefix=f"{TEST_PREFIX}mountcall-", dir="/tmp"))
    backing = base / "volume.img"
    backing.touch(0o600)
    os.truncate(backing, 64 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-E", "nodiscard", str(backing)], check=True)
    (base / "mnt").mkdir()
    bound = loop._attach_loop(str(backing), lambda _d: None)
    try:
        yield bound, base / "mnt"
    finally:
        while kernel.mounts_at(str(base / "mnt")):
            subprocess.run(["umount", str(base / "mnt")], check=False)
        for each in kernel.loops_of_file(str(backing)):
            subprocess.run(["losetup", "--detach", each], check=False)
        shutil.rmtree(base, ignore_errors=True)


def commands() -> list[str]:
    return [line for line, _code, _ms in runner.current().history]


def test_a_mount_with_flag_options_and_its_unmount_start_no_process(device: tuple[str, Path]) -> None:
    loop_device, target = device
    runner.current().history.clear()
    spec = VolumeSpec("v1", fs_type="ext4", mount_options=("noatime",))
    assert mounting.ensure_mounted(loop_device, str(target), spec, Undo())
    [mount] = kernel.mounts_at(str(target))
    assert mount.source == loop_device and mount.fs_type == "ext4"
    assert {"rw", "nosuid", "nodev", "noatime"} <= set(mount.options.split(","))
    assert [line.split(" ", 1)[0] for line in commands()] == ["mount(2)"]
    assert commands()[0].startswith("mount(2) mount -c -t ext4 -o nosuid,nodev,noatime,rw -w ")

    runner.current().history.clear()
    assert mounting.unmount_target(str(target)) == 1
    assert kernel.mounts_at(str(target)) == []
    assert [line.split(" ", 1)[0] for line in commands()] == ["umount2(2)"]


def test_a_read_only_mount_is_read_only_without_mount8(device: tuple[str, Path]) -> None:
    loop_device, target = device
    runner.current().history.clear()
    spec = VolumeSpec("v1", fs_type="ext4", read_only=True)
    mounting.ensure_mounted(loop_device, str(target), spec, Undo())
    [mount] = kernel.mounts_at(str(target))
    assert "ro" in mount.options.split(",")
    assert commands()[0].startswith("mount(2) ")
    mounting.unmount_target(str(target))


def test_an_option_that_is_not_a_flag_goes_to_mount8(device: tuple[str, Path]) -> None:
    """A filesystem's own option (ext4's discard) is data mount(8) parses: it runs as before."""
    loop_device, target = device
    runner.current().history.clear()
    mounting.ensure_mounted(loop_device, str(target), VolumeSpec("v1", fs_type="ext4",
                                                                 mount_options=("discard",)), Undo())
    [mount] = kernel.mounts_at(str(target))
    assert "discard" in mount.super_options.split(",")
    assert commands()[0].startswith("mount -c -t ext4 -o nosuid,nodev,discard,rw -w ")
    mounting.unmount_target(str(target))


def test_a_failed_mount2_is_run_again_by_mount8_for_its_message(device: tuple[str, Path]) -> None:
    """mount(2) says only EINVAL; mount(8)'s message is the one a person can act on."""
    loop_device, target = device
    runner.current().history.clear()
    with pytest.raises(CommandFailed) as failed:
        mounting.ensure_mounted(loop_device, str(target), VolumeSpec("v1", fs_type="xfs"), Undo())
    assert "mount failed (exit 32)" in str(failed.value)
    assert kernel.mounts_at(str(target)) == []
    lines = commands()
    assert lines[0].startswith("mount(2) mount -c -t xfs ")
    assert lines[1].startswith("mount -c -t xfs ") and len(lines) == 2


def test_without_mount2_the_tools_do_the_same(device: tuple[str, Path],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    loop_device, target = device
    monkeypatch.setattr(mountcall, "_calls", False)
    runner.current().history.clear()
    mounting.ensure_mounted(loop_device, str(target), VolumeSpec("v1", fs_type="ext4"), Undo())
    assert kernel.mounts_at(str(target))[-1].source == loop_device
    mounting.unmount_target(str(target))
    assert kernel.mounts_at(str(target)) == []
    assert [line.split(" ", 1)[0] for line in commands()] == ["mount", "umount"]


def test_a_csi_publish_binds_the_staged_filesystem_without_mount8(device: tuple[str, Path]) -> None:
    from flexvol.core.config import Config
    from flexvol.csi import node

    loop_device, staging = device
    mounting.ensure_mounted(loop_device, str(staging), VolumeSpec("v1", fs_type="ext4"), Undo())
    target = staging.parent / "pod"
    runner.current().history.clear()
    config = Config(str(staging.parent / "root"))
    node.bind(config, str(staging), str(target), loop_device, "v1", False, Undo())
    try:
        [bound] = kernel.mounts_at(str(target))
        assert bound.source == loop_device and "rw" in bound.options.split(",")
        assert [line.split(" ", 1)[0] for line in commands()] == ["mount(2)"]
        assert commands()[0].startswith("mount(2) mount -c --bind ")
    finally:
        mounting.unmount_target(str(target))
        mounting.unmount_target(str(staging))
