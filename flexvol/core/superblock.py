"""Read a filesystem's type and UUID straight from its superblock.

Used right after our own mkfs to confirm what it made, without another `blkid` process. The
offsets are those of the on-disk formats (ext2/3/4: super block at 1024; xfs: at 0; btrfs: at
64 KiB); anything unrecognised returns None and the caller falls back to blkid.
"""

from __future__ import annotations

import os

EXT_MAGIC = b"\x53\xef"          # s_magic at 1024 + 0x38, little endian 0xEF53
EXT_COMPAT_HAS_JOURNAL = 0x4
EXT_INCOMPAT_EXTENTS = 0x40
EXT_INCOMPAT_64BIT = 0x80
EXT_INCOMPAT_FLEX_BG = 0x200
XFS_MAGIC = b"XFSB"
BTRFS_MAGIC = b"_BHRfS_M"        # at 64 KiB + 0x40


def _uuid(raw: bytes) -> str:
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:32]}"


def identify(head: bytes) -> tuple[str, str] | None:
    """(fs type, UUID) from the first 68 KiB of a device, or None if not recognised."""
    if len(head) >= 1024 + 0x78 and head[1024 + 0x38:1024 + 0x3A] == EXT_MAGIC:
        sb = head[1024:]
        compat = int.from_bytes(sb[0x5C:0x60], "little")
        incompat = int.from_bytes(sb[0x60:0x64], "little")
        uuid = _uuid(sb[0x68:0x78])
        if incompat & (EXT_INCOMPAT_EXTENTS | EXT_INCOMPAT_64BIT | EXT_INCOMPAT_FLEX_BG):
            return "ext4", uuid
        if compat & EXT_COMPAT_HAS_JOURNAL:
            return "ext3", uuid
        return "ext2", uuid
    if head[:4] == XFS_MAGIC and len(head) >= 48:
        return "xfs", _uuid(head[32:48])
    offset = 64 * 1024
    if len(head) >= offset + 0x48 and head[offset + 0x40:offset + 0x48] == BTRFS_MAGIC:
        return "btrfs", _uuid(head[offset + 0x20:offset + 0x30])
    return None


def read_identity(device: str) -> tuple[str, str] | None:
    fd = os.open(device, os.O_RDONLY)
    try:
        head = os.pread(fd, 68 * 1024, 0)
    finally:
        os.close(fd)
    return identify(head)
