"""Hold a mounted volume's filesystem still (FIFREEZE) for the moment its file is copied.

Freezing flushes the filesystem to its loop device and the loop device to the backing file,
then blocks every new write until the thaw: the copy is the filesystem as of one instant,
clean, as after an unmount. A frozen volume blocks its pod's writes, so a freeze is always
undone: by the `finally` of the call that froze it, and, when that call was killed, by the next
snapshot call or `flexvol repair`, which find the marker.

The marker `<data root>/frozen/<volume>.json` is written (fsynced) before the freeze and removed
after the thaw (docs/layout.md section 8): a filesystem we froze always has one.
"""

from __future__ import annotations

import errno
import os

from flexvol.core import kernel, state, wirejson
from flexvol.core.errors import Busy, FlexvolError
from flexvol.core.faults import checkpoint

TYPE_CHECKING = False
if TYPE_CHECKING:
    from flexvol.core.config import Config

# FIFREEZE / FITHAW from linux/fs.h: _IOWR('X', 119, int) and _IOWR('X', 120, int).
FIFREEZE = 0xC0045877
FITHAW = 0xC0045878


def frozen_dir(config: Config) -> str:
    return os.path.join(config.data_root, "frozen")


def marker_path(config: Config, volume_id: str) -> str:
    return os.path.join(frozen_dir(config), volume_id + ".json")


def mount_point_of(config: Config, volume_id: str) -> tuple[str, str] | None:
    """(loop device, one mount point) of the volume's filesystem when it is mounted."""
    mounts = kernel.read_mounts()
    for device in kernel.loops_of_file(config.backing_file(volume_id)):
        found = kernel.mounts_of_device(device, mounts)
        if found:
            return device, found[0].mount_point
    return None


class Frozen:
    """`with Frozen(config, volume_id):` the volume's filesystem is frozen inside, when it is
    mounted (an idle volume needs nothing: the caller holds its lock, so nothing mounts it).
    The caller holds the volume's lock."""

    def __init__(self, config: Config, volume_id: str) -> None:
        self.config = config
        self.volume_id = volume_id
        self.mount_point = ""

    def __enter__(self) -> Frozen:
        found = mount_point_of(self.config, self.volume_id)
        if found is None:
            return self
        device, mount_point = found
        os.makedirs(frozen_dir(self.config), 0o700, exist_ok=True)
        body = {"schema": state.SCHEMA, "volume_id": self.volume_id, "device": device,
                "mount_point": mount_point, "pid": os.getpid(), "at": state.now()}
        state.atomic_write(marker_path(self.config, self.volume_id),
                           (wirejson.dumps(body) + "\n").encode())
        checkpoint("freeze-marked")
        try:
            _ioctl(mount_point, FIFREEZE)
        except OSError as error:
            state.remove(marker_path(self.config, self.volume_id))
            if error.errno == errno.EBUSY:  # frozen already, by someone else: not ours to thaw
                raise Busy(f"the filesystem of volume {self.volume_id} at {mount_point} is already "
                           "frozen by another program", "thaw it (fsfreeze -u) and retry") from None
            raise FlexvolError(f"cannot freeze the filesystem of volume {self.volume_id} at "
                               f"{mount_point}: {error.strerror}") from None
        self.mount_point = mount_point
        checkpoint("frozen")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.mount_point:
            thaw(self.config, self.volume_id)
            self.mount_point = ""


def thaw(config: Config, volume_id: str) -> str:
    """Thaw the volume's filesystem if its marker says we froze it, then remove the marker;
    what was done. The caller holds the volume's lock."""
    path = marker_path(config, volume_id)
    marker = state.read_json(path)
    if marker is None:
        return ""
    places = []
    found = mount_point_of(config, volume_id)
    if found is not None:
        places.append(found[1])
    if marker.get("mount_point") and marker["mount_point"] not in places:
        places.append(str(marker["mount_point"]))
    thawed = ""
    for place in places:
        try:
            _ioctl(place, FITHAW)
            thawed = f"thawed the filesystem of volume {volume_id} at {place}"
            break
        except OSError as error:
            # EINVAL: not frozen (any more); ENOENT/ENOTDIR: that mount is gone.
            if error.errno in (errno.EINVAL, errno.ENOENT, errno.ENOTDIR):
                continue
            raise FlexvolError(f"cannot thaw the filesystem of volume {volume_id} at {place}: "
                               f"{error.strerror}", f"run 'fsfreeze -u {place}' by hand") from None
    checkpoint("thawed")
    state.remove(path, durable=True)
    return thawed or f"volume {volume_id} was not frozen any more"


def frozen_volumes(config: Config) -> list[str]:
    """The volumes whose freeze marker is present (frozen now, or being frozen by a call)."""
    try:
        names = os.listdir(frozen_dir(config))
    except OSError:
        return []
    return sorted(name[:-5] for name in names if name.endswith(".json") and not name.startswith("."))


def thaw_leftovers(config: Config) -> list[str]:
    """Thaw every volume a killed call left frozen: its marker is there and nobody holds its
    lock (a live freezer does). Volumes whose lock is held are left to their holder."""
    notes = []
    for volume_id in frozen_volumes(config):
        try:
            with state.VolumeLock(config, volume_id, wait=0):
                note = thaw(config, volume_id)
        except Busy:
            continue
        if note:
            notes.append(note)
    return notes


def _ioctl(mount_point: str, request: int) -> None:
    import fcntl

    fd = os.open(mount_point, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, request, 0)
    finally:
        os.close(fd)
