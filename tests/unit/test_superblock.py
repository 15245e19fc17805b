from __future__ import annotations

from flexvol.core.superblock import identify


def ext_head(compat: int, incompat: int) -> bytes:
    head = bytearray(70 * 1024)
    sb = 1024
    head[sb + 0x38:sb + 0x3A] = b"\x53\xef"
    head[sb + 0x5C:sb + 0x60] = compat.to_bytes(4, "little")
    head[sb + 0x60:sb + 0x64] = incompat.to_bytes(4, "little")
    head[sb + 0x68:sb + 0x78] = bytes(range(16))
    return bytes(head)


def test_ext_variants() -> None:
    assert identify(ext_head(0x4, 0x2C0)) == ("ext4", "00010203-0405-0607-0809-0a0b0c0d0e0f")
    assert identify(ext_head(0x4, 0x2)) == ("ext3", "00010203-0405-0607-0809-0a0b0c0d0e0f")
    assert identify(ext_head(0x0, 0x2))[0] == "ext2"


def test_xfs_and_btrfs() -> None:
    xfs = bytearray(70 * 1024)
    xfs[:4] = b"XFSB"
    xfs[32:48] = bytes(16)
    assert identify(bytes(xfs)) == ("xfs", "00000000-0000-0000-0000-000000000000")
    btrfs = bytearray(70 * 1024)
    btrfs[65536 + 0x40:65536 + 0x48] = b"_BHRfS_M"
    btrfs[65536 + 0x20:65536 + 0x30] = b"\xff" * 16
    assert identify(bytes(btrfs)) == ("btrfs", "ffffffff-ffff-ffff-ffff-ffffffffffff")


def test_blank_and_short_input() -> None:
    assert identify(bytes(70 * 1024)) is None
    assert identify(b"") is None
