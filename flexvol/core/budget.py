"""The pool's capacity, computed in one place: what a new or grown volume may still take.

Volumes are files on the pool filesystem (the one holding <data root>/volumes). A thin
volume's file is sparse: it was promised its size but holds only the blocks written so far and
takes the rest from the pool's free space as its pod writes. A thick volume reserved all its
blocks with fallocate when it was made. So the pool can honestly promise

    available = free - promised

where free is what the filesystem really has free (statvfs f_bavail: other data on it, images
and logs when the data root shares the root filesystem, counts) and promised is what the
volumes were promised and have not allocated yet: the sum of max(0, size - allocated) over the
backing files (0 for a thick volume). Past it a pod's write would find the pool full: the
loop device fails it with EIO and the filesystem inside is damaged.

The ratio in <data root>/overcommit (default 1) still caps the sum of all sizes at that ratio
times the pool's size. It can only lower the figure: flexvol never promises space the pool
does not have free. A file that holds no positive number is an error naming it, not the default.

The driver (volume._check_pool_space), the toolkit (create, resize, capacity, doctor) and the
agent (NodeCapacity, metrics, low-space events) all use `measure`, so they report one figure.
Standard library only, one statvfs and one scandir: the driver calls it to create or grow.
"""

from __future__ import annotations

import math
import os

from flexvol.core.config import Config
from flexvol.core.errors import FlexvolError, InvalidInput, Refused
from flexvol.core.quantity import human_bytes

DEFAULT_OVERCOMMIT = 1.0
# The pool counts as low below this share of its size (agent event, metric, doctor).
LOW_FRACTION = 0.10
SECTOR = 512


class Pool:
    """One reading of the pool: its filesystem and every backing file on it."""

    __slots__ = ("allocated_bytes", "committed_bytes", "free_bytes", "path", "promised_bytes",
                 "ratio", "shared_bytes", "sizes", "snapshot_bytes", "total_bytes")

    def __init__(self, path: str, total_bytes: int, free_bytes: int, ratio: float,
                 sizes: dict[str, tuple[int, int]], snapshots: tuple[int, int] = (0, 0)) -> None:
        self.path = path
        self.total_bytes = total_bytes
        self.free_bytes = free_bytes
        self.ratio = ratio
        # volume id -> (size, allocated bytes) of its backing file
        self.sizes = sizes
        self.committed_bytes = sum(size for size, _ in sizes.values())
        self.allocated_bytes = sum(allocated for _, allocated in sizes.values())
        # Snapshots (snapshot_usage): what their files hold, and the part of it that shares
        # blocks with a volume. A shared block costs nothing now, but a new one when the volume
        # writes over it: it counts as promised. Snapshot sizes never count in committed.
        self.snapshot_bytes, self.shared_bytes = snapshots
        self.promised_bytes = sum(max(0, size - allocated) for size, allocated in sizes.values()) + \
            self.shared_bytes

    @property
    def budget_bytes(self) -> int:
        """The cap on the sum of sizes: the pool's size times the overcommit ratio."""
        return int(self.total_bytes * self.ratio)

    @property
    def unbacked_bytes(self) -> int:
        """What thin volumes were promised beyond the real free space: writes past it fail."""
        return max(0, self.promised_bytes - self.free_bytes)

    @property
    def available_bytes(self) -> int:
        """What a new or grown volume may take: the published and enforced figure."""
        return max(0, min(self.free_bytes - self.promised_bytes,
                          self.budget_bytes - self.committed_bytes))

    @property
    def low(self) -> bool:
        return self.free_bytes < self.total_bytes * LOW_FRACTION or self.unbacked_bytes > 0

    def as_dict(self) -> dict:
        return {"pool": self.path, "pool_bytes": self.total_bytes, "pool_free_bytes": self.free_bytes,
                "committed_bytes": self.committed_bytes, "allocated_bytes": self.allocated_bytes,
                "promised_bytes": self.promised_bytes, "unbacked_bytes": self.unbacked_bytes,
                "available_bytes": self.available_bytes, "snapshot_bytes": self.snapshot_bytes,
                "snapshot_shared_bytes": self.shared_bytes, "budget_ratio": self.ratio,
                "budget_bytes": self.budget_bytes, "low": self.low}

    def describe(self) -> str:
        """The figures in one sentence, for messages and events."""
        text = (f"the pool filesystem under {self.path} ({human_bytes(self.total_bytes)}) has "
                f"{human_bytes(self.free_bytes)} of free space")
        if self.promised_bytes:
            text += (f", and thin volumes were promised {human_bytes(self.promised_bytes)} of it "
                     "that they have not written yet")
        return text


def measure(config: Config) -> Pool:
    """Read the pool: one statvfs of its filesystem and one scan of the backing files."""
    where = pool_path(config)
    stats = os.statvfs(where)
    return Pool(where, stats.f_blocks * stats.f_frsize, stats.f_bavail * stats.f_frsize,
                overcommit_ratio(config), backing_files(config), snapshot_usage(config))


def pool_path(config: Config) -> str:
    """The volumes dir, or its closest existing parent on a node that has none yet."""
    where = config.volumes_dir
    while not os.path.isdir(where) and where not in ("", "/"):
        where = os.path.dirname(where)
    return where or "/"


def check(config: Config, size: int, volume_id: str) -> Pool:
    """Refuse making volume_id `size` bytes (new, or grown from its backing file's current size)
    if the pool cannot honestly back it; return the pool as read."""
    pool = measure(config)
    if size > pool.total_bytes:
        raise InvalidInput(
            f"size {human_bytes(size)} of volume {volume_id} is larger than the whole pool "
            f"filesystem under {pool.path} ({human_bytes(pool.total_bytes)})", "ask for a smaller size")
    current = pool.sizes.get(volume_id, (0, 0))[0]
    need = size - current
    if need <= 0:
        return pool
    honest = pool.free_bytes - pool.promised_bytes
    what = (f"volume {volume_id} at {human_bytes(size)}" if not current else
            f"growing volume {volume_id} from {human_bytes(current)} to {human_bytes(size)}")
    if need > honest:
        raise Refused(
            f"{what} needs {human_bytes(need)} more of the pool, but {pool.describe()}: "
            f"{human_bytes(max(0, honest))} available, {human_bytes(need - max(0, honest))} short",
            "free space on the pool filesystem, delete unused volumes, or ask for at most "
            f"{human_bytes(pool.available_bytes + current)}" if pool.available_bytes
            else "free space on the pool filesystem or delete unused volumes")
    if pool.committed_bytes + need > pool.budget_bytes:
        committed = pool.committed_bytes + need
        raise Refused(
            f"{what} would commit {human_bytes(committed)} of the pool's budget "
            f"{human_bytes(pool.budget_bytes)} ({pool.ratio:g} x {human_bytes(pool.total_bytes)}): "
            f"{human_bytes(committed - pool.budget_bytes)} over",
            f"delete unused volumes, ask for less, or raise the ratio in {config.overcommit_path}")
    return pool


def overcommit_ratio(config: Config) -> float:
    """The ratio in <data root>/overcommit, the default without the file. A file that cannot be
    read or holds no positive number is an error naming it: guessing could promise more than
    the operator allowed."""
    path = config.overcommit_path
    fix = (f"write a positive number there (1: the volumes' sizes may add up to the pool's size, "
           f"2: to twice it), or remove the file for the default {DEFAULT_OVERCOMMIT:g}")
    try:
        with open(path, "rb") as handle:
            raw = handle.read(64)
    except FileNotFoundError:
        return DEFAULT_OVERCOMMIT
    except OSError as error:
        raise FlexvolError(f"cannot read the overcommit ratio in {path}: {error.strerror}", fix) from None
    text = raw.decode("ascii", errors="replace").strip()
    try:
        ratio = float(text)
    except ValueError:
        ratio = 0.0
    if not math.isfinite(ratio) or ratio <= 0:
        raise FlexvolError(f"{path} holds {text[:20]!r}, not an overcommit ratio", fix)
    return ratio


def backing_files(config: Config) -> dict[str, tuple[int, int]]:
    """volume id -> (size, allocated bytes) of every backing file. Allocated is st_blocks,
    which counts a thick volume's fallocated blocks too."""
    found: dict[str, tuple[int, int]] = {}
    try:
        with os.scandir(config.volumes_dir) as entries:
            for entry in entries:
                if not entry.name.endswith(".img") or entry.name.startswith("."):
                    continue
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                found[entry.name[:-4]] = (info.st_size, info.st_blocks * SECTOR)
    except OSError:
        return {}
    return found


def committed_bytes(config: Config, excluding: str = "") -> int:
    """The sum of every backing file's size (what the volumes were promised)."""
    return sum(size for volume_id, (size, _) in backing_files(config).items() if volume_id != excluding)


def snapshot_usage(config: Config) -> tuple[int, int]:
    """(bytes the snapshot files hold, the part of it made by reflink, shared with a volume).
    A copied snapshot's blocks are its own: statvfs already counts them as used."""
    from flexvol.core import wirejson

    held = shared = 0
    directory = os.path.join(config.data_root, "snapshots")
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if not entry.name.endswith(".img") or entry.name.startswith("."):
                    continue
                try:
                    allocated = entry.stat(follow_symlinks=False).st_blocks * SECTOR
                except OSError:
                    continue
                try:
                    with open(os.path.join(directory, entry.name[:-4] + ".json"), "rb") as handle:
                        method = wirejson.loads(handle.read().decode()).get("method")
                except (OSError, ValueError, AttributeError):
                    method = None
                held += allocated
                if method != "copy":  # reflink, or not known yet: the cautious reading
                    shared += allocated
    except OSError:
        pass
    return held, shared
