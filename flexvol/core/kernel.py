"""Read-only facts from the kernel: mounts, loop devices and their backing files, probes.

Parsers are pure functions over text so they can be tested against captured outputs.
"""

from __future__ import annotations

import os

from flexvol.core.runner import run

MOUNTINFO = "/proc/self/mountinfo"
SYS_BLOCK = "/sys/block"
# Where loop devices' sysfs dirs really are: /sys/block/loopN are symlinks into it, and a scan
# through them costs twice as much (300 device nodes: 2.2 ms against 1.0 ms).
SYS_VIRTUAL_BLOCK = "/sys/devices/virtual/block"
DELETED_SUFFIX = " (deleted)"


class Mount:
    """One line of /proc/self/mountinfo (proc(5))."""

    __slots__ = (
        "device_number",
        "fs_type",
        "mount_id",
        "mount_point",
        "options",
        "parent_id",
        "root",
        "source",
        "super_options",
    )

    def __init__(self, mount_id: int, parent_id: int, device_number: str, root: str,
                 mount_point: str, options: str, fs_type: str, source: str,
                 super_options: str) -> None:
        self.mount_id = mount_id
        self.parent_id = parent_id
        self.device_number = device_number
        self.root = root
        self.mount_point = mount_point
        self.options = options
        self.fs_type = fs_type
        self.source = source
        self.super_options = super_options

    @property
    def read_only(self) -> bool:
        return "ro" in self.options.split(",")

    def __repr__(self) -> str:
        return f"Mount({self.source} on {self.mount_point} type {self.fs_type} ({self.options}))"


def unescape(field: str) -> str:
    """Undo the kernel's octal escapes of space, tab, newline and backslash (\\040 ...)."""
    if "\\" not in field:
        return field
    out = []
    index = 0
    while index < len(field):
        char = field[index]
        octal = field[index + 1:index + 4]
        if char == "\\" and len(octal) == 3 and all(c in "01234567" for c in octal):
            out.append(chr(int(octal, 8)))
            index += 4
        else:
            out.append(char)
            index += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[Mount]:
    mounts = []
    for line in text.splitlines():
        fields = line.split(" ")
        if len(fields) < 10:
            continue
        try:
            separator = fields.index("-", 6)
        except ValueError:
            continue
        tail = fields[separator + 1:]
        if len(tail) < 3:
            continue
        mounts.append(Mount(
            int(fields[0]), int(fields[1]), fields[2], unescape(fields[3]), unescape(fields[4]),
            fields[5], tail[0], unescape(tail[1]), tail[2],
        ))
    return mounts


def read_mounts() -> list[Mount]:
    with open(MOUNTINFO, encoding="utf-8", errors="surrogateescape") as handle:
        return parse_mountinfo(handle.read())


def mounts_at(path: str, mounts: list[Mount] | None = None) -> list[Mount]:
    """Mounts whose mount point is exactly `path` (stacked mounts give several)."""
    return [mount for mount in (mounts if mounts is not None else read_mounts())
            if mount.mount_point == path]


def device_number(device: str) -> str | None:
    """The "major:minor" of a block device node, as mountinfo shows it."""
    try:
        rdev = os.stat(device).st_rdev
    except OSError:
        return None
    return f"{os.major(rdev)}:{os.minor(rdev)}"


def mounts_of_device(device: str, mounts: list[Mount] | None = None) -> list[Mount]:
    """Mounts of `device`: its filesystem mounted, and its device node bind-mounted onto a file
    (a raw block volume published as CSI drivers do)."""
    number = device_number(device)
    return [mount for mount in (mounts if mounts is not None else read_mounts())
            if mount.source == device or (number is not None and mount.device_number == number)
            or (number is not None and bound_device_number(mount, os.path.basename(device)) == number)]


def bound_device_number(mount: Mount, name: str = "") -> str | None:
    """The "major:minor" of a device node bind-mounted by `mount`, else None.

    mountinfo shows such a bind by the filesystem the node lives in (devtmpfs 0:6, source
    "devtmpfs" or "udev") and the node's path as the mount's root (/loop3), never by the device
    itself: only a stat of the mount point tells. Looked at only for a bind of something that
    is not a filesystem's root, from devtmpfs or named `name`, so an ordinary mount costs no stat.
    """
    if mount.root == "/" or not (mount.fs_type == "devtmpfs" or (name and mount.root.endswith("/" + name))):
        return None
    import stat

    try:
        info = os.stat(mount.mount_point)
    except OSError:
        return None
    if not stat.S_ISBLK(info.st_mode):
        return None
    return f"{os.major(info.st_rdev)}:{os.minor(info.st_rdev)}"


def device_of_mount(mount: Mount) -> str:
    """The block device a mount shows: its source, or the loop device whose node it binds."""
    if mount.source.startswith("/dev/"):
        return mount.source
    number = bound_device_number(mount)
    if number is None:
        return mount.source
    name = os.path.basename(os.path.realpath(f"/sys/dev/block/{number}"))
    return f"/dev/{name}" if name.startswith("loop") else mount.source


def open_holders(device: str) -> list[str]:
    """What holds `device` open besides its mounts, described for a person: processes with a
    descriptor on it ("pid 42 (dd)"), block devices stacked on it (sysfs holders/), and loop
    devices whose backing file is it. Scans /proc: for the rare path, never per call."""
    import stat

    number = device_number(device)
    if number is None:
        return []
    stacked = _listdir(f"{SYS_BLOCK}/{os.path.basename(device)}/holders")
    found = [f"{name} (stacked on it)" for name in stacked]
    for other, backing in loop_devices().items():
        try:
            info = os.stat(backing.removesuffix(DELETED_SUFFIX))
        except OSError:
            continue
        if stat.S_ISBLK(info.st_mode) and f"{os.major(info.st_rdev)}:{os.minor(info.st_rdev)}" == number:
            found.append(f"{other} (a loop device over it)")
    own = str(os.getpid())
    for pid in _listdir("/proc"):
        if not pid.isdigit() or pid == own:
            continue
        for fd in _listdir(f"/proc/{pid}/fd"):
            try:
                info = os.stat(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if stat.S_ISBLK(info.st_mode) and f"{os.major(info.st_rdev)}:{os.minor(info.st_rdev)}" == number:
                found.append(f"pid {pid} ({_read_sys(f'/proc/{pid}/comm') or '?'})")
                break
    return found


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _read_sys(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            return handle.read().rstrip("\n")
    except OSError:
        return None


def loop_backing_file(device: str) -> str | None:
    """The backing file the kernel records for /dev/loopN, or None if it has none."""
    name = os.path.basename(device)
    if not name.startswith("loop"):
        return None
    return _read_sys(f"{SYS_BLOCK}/{name}/loop/backing_file")


def loop_devices() -> dict[str, str]:
    """Every attached loop device and its backing file, as /sys/block reports them."""
    found: dict[str, str] = {}
    for where in (SYS_VIRTUAL_BLOCK, SYS_BLOCK):
        try:
            block = os.open(where, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            break
        except OSError:
            continue
    else:
        return found
    try:
        for name in os.listdir(block):
            if not name.startswith("loop"):
                continue
            # Relative to the open dir: a node keeps every loop device node it ever made, and
            # most are unbound (no loop/ dir), so each look must cost as little as it can. An
            # access() answers "unbound" without the exception a failed open raises: half the
            # cost per node. A bound one is then opened and read as before.
            attribute = f"{name}/loop/backing_file"
            if not os.access(attribute, os.F_OK, dir_fd=block):
                continue
            try:
                fd = os.open(attribute, os.O_RDONLY | os.O_CLOEXEC, dir_fd=block)
            except OSError:
                continue
            try:
                backing = os.read(fd, 8192).decode("utf-8", "surrogateescape").rstrip("\n")
            except OSError:
                backing = ""
            finally:
                os.close(fd)
            if backing:
                found["/dev/" + name] = backing
    finally:
        os.close(block)
    return found


def loops_of_file(path: str) -> list[str]:
    """Loop devices attached to `path` (its real path, or the same path since deleted)."""
    real = os.path.realpath(path)
    wanted = {real, real + DELETED_SUFFIX}
    return sorted(device for device, backing in loop_devices().items() if backing in wanted)


def loop_direct_io(device: str) -> bool | None:
    value = _read_sys(f"{SYS_BLOCK}/{os.path.basename(device)}/loop/dio")
    return None if value is None else value == "1"


def read_only(device: str) -> bool:
    return _read_sys(f"{SYS_BLOCK}/{os.path.basename(device)}/ro") == "1"


def block_size_bytes(device: str) -> int | None:
    value = _read_sys(f"{SYS_BLOCK}/{os.path.basename(device)}/size")
    return None if value is None else int(value) * 512


class Probe:
    """What `blkid -p` says about a device: blank, a filesystem, or unknown (never guessed)."""

    __slots__ = ("blank", "fs_type", "uuid")

    def __init__(self, blank: bool, fs_type: str = "", uuid: str = "") -> None:
        self.blank = blank
        self.fs_type = fs_type
        self.uuid = uuid


def parse_blkid_export(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


def probe(device: str, timeout: float = 30) -> Probe:
    """Probe with `blkid -p`. Raise on anything but a clean answer.

    blkid exits 2 both for "nothing found" and for "cannot open or read" (util-linux
    misc-utils/blkid.c): only exit 2 with an empty stderr counts as blank.
    """
    from flexvol.core.errors import ProbeFailed

    done = run(["blkid", "-p", "-o", "export", device], timeout=timeout, ok=(0, 2), what="blkid")
    if done.code == 2:
        if done.err.strip():
            raise ProbeFailed(f"blkid could not read {device}: {done.err.strip()[:200]}",
                              "inspect the device by hand before retrying; nothing was formatted")
        return Probe(blank=True)
    values = parse_blkid_export(done.out)
    fs_type = values.get("TYPE", "")
    if not fs_type:
        kind = values.get("PTTYPE") or values.get("USAGE") or "an unidentified signature"
        raise ProbeFailed(f"{device} holds {kind}, not a filesystem",
                          "inspect it by hand; flexvol formats only blank devices")
    return Probe(blank=False, fs_type=fs_type, uuid=values.get("UUID", ""))
