"""Copy one backing file to a new file, as cheaply as the data root's filesystem allows.

Where the filesystem shares blocks between files (xfs made with reflink=1, btrfs), the new
file is a reflink (FICLONE ioctl): it takes milliseconds and no space, whatever the size, and
the two files part ways block by block as either is written. Elsewhere (ext4, tmpfs) it is a
sparse copy: only the file's data extents are copied (SEEK_DATA / SEEK_HOLE), holes are never
read and stay holes, so a 1 GiB volume holding 200 MiB costs 200 MiB to copy and to keep.
"""

from __future__ import annotations

import errno
import os

from flexvol.core.errors import FlexvolError
from flexvol.core.faults import checkpoint

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    Progress = Callable[[int, int], None]

REFLINK = "reflink"
COPY = "copy"
# FICLONE from linux/fs.h: _IOW(0x94, 9, int).
FICLONE = 0x40049409
# copy_file_range per call: progress is reported (and a test may kill the copy) between chunks.
CHUNK = 64 << 20
# FICLONE fails with these where the filesystem cannot share blocks (or not across these two
# files): the sparse copy is the answer then, not an error.
NO_REFLINK = frozenset({errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS,
                        errno.EPERM})


def copy_file(source: str, destination: str, *, progress: Progress | None = None,
              allow_reflink: bool = True) -> str:
    """Make `destination` (which must not exist) a copy of `source`; return how: REFLINK or
    COPY. The new file is fsynced before this returns. A failure removes what it made."""
    src = _open(source, os.O_RDONLY)
    try:
        size = os.fstat(src).st_size
        try:
            dst = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as error:
            raise FlexvolError(f"cannot create {destination}: {error.strerror}",
                               "check that the data root is writable and has free space") from None
        try:
            method = _copy(src, dst, size, progress, allow_reflink)
            os.fsync(dst)
        except BaseException as error:
            os.close(dst)
            _remove(destination)
            if isinstance(error, OSError):
                raise FlexvolError(f"copying {source} to {destination} failed: {error.strerror}",
                                   _hint(error)) from None
            raise
        os.close(dst)
    finally:
        os.close(src)
    return method


def _copy(src: int, dst: int, size: int, progress: Progress | None, allow_reflink: bool) -> str:
    if allow_reflink and reflink(src, dst):
        checkpoint("copy-chunk")
        if progress:
            progress(size, size)
        return REFLINK
    os.ftruncate(dst, size)
    sparse_copy(src, dst, size, progress)
    return COPY


def reflink(src: int, dst: int) -> bool:
    """Share all of src's blocks with the empty dst; False where the filesystem cannot."""
    import fcntl

    try:
        fcntl.ioctl(dst, FICLONE, src)
    except OSError as error:
        if error.errno in NO_REFLINK:
            return False
        raise
    return True


def data_extents(fd: int, size: int) -> list[tuple[int, int]]:
    """(start, end) of every data extent of the file, from SEEK_DATA / SEEK_HOLE."""
    extents = []
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as error:
            if error.errno == errno.ENXIO:  # no data past offset
                break
            raise
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        if end <= start:
            break
        extents.append((start, end))
        offset = end
    return extents


def sparse_copy(src: int, dst: int, size: int, progress: Progress | None = None) -> int:
    """Copy src's data extents into dst (already `size` bytes of holes); return bytes copied.
    Progress is (bytes copied, bytes of data to copy)."""
    extents = data_extents(src, size)
    total = sum(end - start for start, end in extents)
    done = 0
    if progress:
        progress(0, total)
    for start, end in extents:
        offset = start
        while offset < end:
            count = os.copy_file_range(src, dst, min(CHUNK, end - offset), offset, offset)
            if count == 0:  # the source shrank under us: nothing more to read
                return done
            offset += count
            done += count
            checkpoint("copy-chunk")
            if progress:
                progress(done, total)
    return done


def supports_reflink(directory: str) -> bool:
    """Whether files in `directory` can share blocks: one FICLONE between two scratch files."""
    first = os.path.join(directory, f".reflink-probe.{os.getpid()}.a")
    second = os.path.join(directory, f".reflink-probe.{os.getpid()}.b")
    try:
        with open(first, "wb") as handle:
            handle.write(b"\0" * 4096)
        src = os.open(first, os.O_RDONLY)
        try:
            dst = os.open(second, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                return reflink(src, dst)
            finally:
                os.close(dst)
        finally:
            os.close(src)
    except OSError:
        return False
    finally:
        _remove(first)
        _remove(second)


def _open(path: str, flags: int) -> int:
    try:
        return os.open(path, flags | os.O_CLOEXEC)
    except FileNotFoundError:
        raise FlexvolError(f"{path} does not exist") from None
    except OSError as error:
        raise FlexvolError(f"cannot open {path}: {error.strerror}") from None


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _hint(error: OSError) -> str:
    if error.errno == errno.ENOSPC:
        return "free space on the pool filesystem (a copy takes as much as the data it copies)"
    return "check the data root's filesystem"
