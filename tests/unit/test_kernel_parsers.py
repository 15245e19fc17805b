from __future__ import annotations

import os
from pathlib import Path

import pytest

from flexvol.core import kernel
from flexvol.core.config import Config

DATA = Path(__file__).parent / "data"


def test_mountinfo_parses_escapes_and_optional_fields() -> None:
    mounts = kernel.parse_mountinfo((DATA / "mountinfo.txt").read_text())
    points = [m.mount_point for m in mounts]
    assert "/var/lib/kubelet/pods/u1/volumes/flexvol~loop/my vol" in points
    assert "/tmp/with\\backslash" in points
    assert len(mounts) == 5, "the garbage line is skipped"
    ro = next(m for m in mounts if m.mount_point == "/mnt/ro")
    assert ro.read_only and ro.fs_type == "xfs" and ro.source == "/dev/loop1"
    tagged = next(m for m in mounts if m.mount_point == "/opt/x")
    assert tagged.fs_type == "ext4" and tagged.source == "/dev/loop2"


def test_mounts_at_returns_stacked_mounts_in_order() -> None:
    mounts = kernel.parse_mountinfo((DATA / "mountinfo.txt").read_text())
    assert [m.source for m in kernel.mounts_at("/mnt/ro", mounts)] == ["/dev/loop1"]
    assert kernel.mounts_at("/nowhere", mounts) == []


def test_blkid_export_parser() -> None:
    values = kernel.parse_blkid_export("DEVNAME=/dev/loop0\nUUID=abc\nTYPE=ext4\nUSAGE=filesystem\n")
    assert values["TYPE"] == "ext4" and values["UUID"] == "abc"


def test_backing_file_to_volume_id_including_deleted_files() -> None:
    config = Config("/srv/pool")
    assert config.volume_id_of_backing_file("/srv/pool/volumes/v1.img") == "v1"
    assert config.volume_id_of_backing_file("/srv/pool/volumes/v1.img (deleted)") == "v1"
    assert config.volume_id_of_backing_file("/srv/other/v1.img") is None
    assert config.volume_id_of_backing_file("/srv/pool/volumes/v1.raw") is None


def _fake_sys(tmp_path: Path) -> tuple[Path, Path]:
    """A sysfs as the kernel lays it out: the loop devices' dirs under devices/virtual/block,
    /sys/block holding symlinks to them; loop0 bound, loop1 not."""
    virtual, block = tmp_path / "devices" / "virtual" / "block", tmp_path / "block"
    (virtual / "loop0" / "loop").mkdir(parents=True)
    (virtual / "loop0" / "loop" / "backing_file").write_text("/pool/volumes/a.img\n")
    (virtual / "loop1").mkdir()
    block.mkdir()
    for name in ("loop0", "loop1"):
        (block / name).symlink_to(f"../devices/virtual/block/{name}")
    return virtual, block


def test_loop_scan_reads_the_real_sysfs_dirs_not_the_sys_block_symlinks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    virtual, block = _fake_sys(tmp_path)
    monkeypatch.setattr(kernel, "SYS_BLOCK", str(block))
    monkeypatch.setattr(kernel, "SYS_VIRTUAL_BLOCK", str(virtual), raising=False)
    opened_in = []
    real_open = kernel.os.open

    def spy(path: str, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if dir_fd is not None:
            opened_in.append(os.readlink(f"/proc/self/fd/{dir_fd}"))
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(kernel.os, "open", spy)
    assert kernel.loop_devices() == {"/dev/loop0": "/pool/volumes/a.img"}
    # Each device looked up in the dir that holds it: no symlink followed per device.
    assert opened_in and set(opened_in) == {str(virtual)}


def test_loop_scan_falls_back_to_sys_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _virtual, block = _fake_sys(tmp_path)
    monkeypatch.setattr(kernel, "SYS_BLOCK", str(block))
    monkeypatch.setattr(kernel, "SYS_VIRTUAL_BLOCK", str(tmp_path / "missing"), raising=False)
    assert kernel.loop_devices() == {"/dev/loop0": "/pool/volumes/a.img"}
