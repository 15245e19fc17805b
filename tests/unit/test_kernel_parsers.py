from __future__ import annotations

from pathlib import Path

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
