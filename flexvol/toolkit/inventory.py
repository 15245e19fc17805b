"""What is on this node: records, backing files, loop devices, mounts and the kubelet's pod dirs
joined into one view per volume, plus the leftovers that do not add up (what `flexvol ls`,
`show`, `repair` and `capacity` present).

Read-only: nothing here changes the node (repair.py acts on the findings). Returns dataclasses;
the CLI renders them.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from flexvol.core import kernel, layout, state
from flexvol.core.budget import Pool, measure
from flexvol.core.config import Config
from flexvol.core.errors import StateCorrupt

DEFAULT_KUBELET_ROOT = "/var/lib/kubelet"
# The kubelet's directory name for a FlexVolume driver "flexvol/loop" inside a pod dir.
POD_VOLUME_DIR = "flexvol~loop"


def readable_bytes(value: int | None) -> str:
    """Bytes for people, by the toolkit's one rule (quantity.human_bytes); "-" when unknown."""
    from flexvol.core.quantity import human_bytes

    return "-" if value is None else human_bytes(value)


@dataclass
class MountView:
    path: str
    read_only: bool
    device: str
    # "namespace/name" when known, else the pod uid, else "" (not a kubelet pod dir)
    pod: str = ""


@dataclass
class VolumeView:
    volume_id: str
    state: str
    size_bytes: int | None
    allocated_bytes: int | None
    fs_type: str
    formatted: bool
    loop_devices: list[str] = field(default_factory=list)
    direct_io: bool | None = None
    mounts: list[MountView] = field(default_factory=list)
    record: state.Record | None = None
    file_path: str = ""
    file_exists: bool = False
    problems: list[str] = field(default_factory=list)
    # what the mounted filesystem says it uses (df), None when not mounted
    fs_used_bytes: int | None = None
    # the PV(s) and claim ("namespace/name") using it, from its record
    pvs: list[str] = field(default_factory=list)
    claim: str = ""
    # set while its filesystem has not caught up with a grown file: {to, since, error}
    growing: dict | None = None
    # which front end(s) it is used through: "csi", "flexvolume"
    front_ends: list[str] = field(default_factory=list)
    # its ready snapshots and the bytes their files hold (core/snapshots.py)
    snapshots: int = 0
    snapshot_bytes: int = 0

    def as_dict(self) -> dict:
        return {
            "volume_id": self.volume_id,
            "state": self.state,
            "size_bytes": self.size_bytes,
            "allocated_bytes": self.allocated_bytes,
            "fs_type": self.fs_type,
            "formatted": self.formatted,
            "loop_devices": self.loop_devices,
            "direct_io": self.direct_io,
            "mounts": [{"path": m.path, "read_only": m.read_only, "device": m.device, "pod": m.pod}
                       for m in self.mounts],
            "file": self.file_path,
            "file_exists": self.file_exists,
            "problems": self.problems,
            "fs_used_bytes": self.fs_used_bytes,
            "pvs": self.pvs,
            "claim": self.claim,
            "growing": self.growing,
            "front_ends": self.front_ends,
            "snapshots": self.snapshots,
            "snapshot_bytes": self.snapshot_bytes,
        }


@dataclass
class Snapshot:
    """One reading of the kernel's state, shared by every view built from it."""

    loops: dict[str, str]
    mounts: list[kernel.Mount]

    @classmethod
    def take(cls) -> Snapshot:
        return cls(kernel.loop_devices(), kernel.read_mounts())

    def loops_of(self, path: str) -> list[str]:
        real = os.path.realpath(path)
        wanted = {real, real + kernel.DELETED_SUFFIX}
        return sorted(device for device, backing in self.loops.items() if backing in wanted)

    def mounts_of(self, device: str) -> list[kernel.Mount]:
        return kernel.mounts_of_device(device, self.mounts)


def record_ids(config: Config) -> list[str]:
    return layout.record_ids(config)


def file_ids(config: Config) -> list[str]:
    return layout.entries(config.volumes_dir, ".img")


def known_ids(config: Config, snapshot: Snapshot) -> list[str]:
    """Every volume id seen in records, backing files or attached loop devices."""
    ids = set(record_ids(config)) | set(file_ids(config))
    for backing in snapshot.loops.values():
        volume_id = config.volume_id_of_backing_file(backing)
        if volume_id:
            ids.add(volume_id)
    return sorted(ids)


def pod_of(path: str, kubelet_root: str) -> str:
    """The pod a mount dir belongs to: <kubelet root>/pods/<uid>/volumes/<driver>/<name>."""
    prefix = os.path.join(kubelet_root, "pods") + "/"
    if not path.startswith(prefix):
        return ""
    uid = path[len(prefix):].split("/", 1)[0]
    name = _pod_name(os.path.join(prefix, uid))
    return name or uid


def pod_of_mount(config: Config, path: str, kubelet_root: str) -> str:
    """namespace/name as the kubelet named the pod when it mounted, else what the pod dir says."""
    try:
        target = state.load_target(config, path)
    except StateCorrupt:
        target = None
    return (target.pod if target else "") or pod_of(path, kubelet_root)


def _pod_name(pod_dir: str) -> str:
    # The kubelet writes the pod's hostname (its name, unless spec.hostname says otherwise)
    # as the last line of etc-hosts; the namespace is not on disk.
    try:
        with open(os.path.join(pod_dir, "etc-hosts"), encoding="utf-8", errors="replace") as handle:
            lines = [line.split() for line in handle if line.strip() and not line.startswith("#")]
    except OSError:
        return ""
    return lines[-1][-1] if lines and len(lines[-1]) > 1 else ""


def awaiting_first_mount(record: state.Record | None) -> bool:
    """A provisioned volume's record written by the node agent before the driver's first mount
    made its file (provisioning/ownership.py): expected to have no file yet."""
    return bool(record and record.pv_uid and not record.formatted)


def view(config: Config, volume_id: str, snapshot: Snapshot | None = None,
         kubelet_root: str = DEFAULT_KUBELET_ROOT) -> VolumeView:
    snapshot = snapshot or Snapshot.take()
    problems: list[str] = []
    try:
        record = state.load_record(config, volume_id)
    except StateCorrupt as error:
        record = None
        problems.append(str(error))
    path = config.backing_file(volume_id)
    try:
        info: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        info = None
    devices = snapshot.loops_of(path)
    mounts = [MountView(mount.mount_point, mount.read_only, device, pod_of_mount(config, mount.mount_point,
                                                                                kubelet_root))
              for device in devices for mount in snapshot.mounts_of(device)]
    formatted = (record.formatted if record else None) or {}
    fs_type = formatted.get("fs_type") or (record.fs_type if record else "") or ""
    if record is None and not problems:
        problems.append("no record")
    if info is None and not (awaiting_first_mount(record) and not devices):
        problems.append("backing file missing")
    for device in devices:
        if snapshot.loops[device].endswith(kernel.DELETED_SUFFIX):
            problems.append(f"{device} is attached to a deleted backing file")
    if len(devices) > 1:
        problems.append(f"{len(devices)} loop devices for one file")
    if problems:
        word = "inconsistent"
    elif info is None:
        word = "provisioned"  # awaiting its first mount
    elif mounts:
        word = "mounted"
    elif devices:
        word = "attached"
    else:
        word = "idle"
    return VolumeView(
        volume_id=volume_id,
        state=word,
        size_bytes=info.st_size if info else (record.size_bytes if record else None),
        allocated_bytes=info.st_blocks * 512 if info else None,
        fs_type=fs_type,
        formatted=bool(formatted),
        loop_devices=devices,
        direct_io=kernel.loop_direct_io(devices[0]) if devices else None,
        fs_used_bytes=_used(mounts[0].path) if mounts else None,
        mounts=mounts,
        record=record,
        file_path=path,
        file_exists=info is not None,
        problems=problems,
        pvs=pvs_of(record),
        claim=str((record.claim if record else "") or ""),
        growing=_growth_pending(record, info.st_size if info else None),
        front_ends=front_ends(record, [mount.path for mount in mounts]),
    )


# Where the kubelet mounts for each front end: CSI publishes into pods' `kubernetes.io~csi` dirs
# and stages under `plugins/kubernetes.io/csi/`; FlexVolume mounts `flexvol~loop` pod dirs and,
# in attach mode, `plugins/kubernetes.io/flexvolume/` global dirs.
CSI_PATHS = ("/volumes/kubernetes.io~csi/", "/plugins/kubernetes.io/csi/")
FLEXVOLUME_PATHS = ("/volumes/flexvol~loop/", "/plugins/kubernetes.io/flexvolume/")


def front_ends(record: state.Record | None, mount_paths: list[str]) -> list[str]:
    """The front ends a volume is used through: from its mounts when it has any, else from who
    made it (a CSI name in its record)."""
    found = set()
    for path in mount_paths:
        if any(part in path for part in CSI_PATHS):
            found.add("csi")
        elif any(part in path for part in FLEXVOLUME_PATHS):
            found.add("flexvolume")
    if not found and record is not None:
        found.add("csi" if record.csi_name else "flexvolume")
    return sorted(found)


def _growth_pending(record: state.Record | None, file_size: int | None) -> dict | None:
    from flexvol.core.backing import growth_pending

    return growth_pending(record, file_size)


def pvs_of(record: state.Record | None) -> list[str]:
    """The PV the agent provisioned the volume for, then any other PV names mounts used."""
    if record is None:
        return []
    names = [record.pv_name or "", *record.pv_names]
    return [name for name in dict.fromkeys(names) if name and isinstance(name, str)]


def _used(path: str) -> int | None:
    try:
        found = os.statvfs(path)
    except OSError:
        return None
    return (found.f_blocks - found.f_bfree) * found.f_frsize


def holders(paths: list[str]) -> list[tuple[int, str, str]]:
    """Processes whose working directory or open files lie under one of `paths`:
    (pid, name, path). What keeps a volume busy when an unmount fails."""
    import psutil

    prefixes = [path.rstrip("/") + "/" for path in paths]

    def under(candidate: str) -> bool:
        return any(candidate + "/" == prefix or candidate.startswith(prefix) for prefix in prefixes)

    found = []
    for process in psutil.process_iter(["pid", "name"]):
        try:
            places = [process.cwd(), *(item.path for item in process.open_files())]
        except (psutil.Error, OSError):
            continue
        hit = next((place for place in places if under(place)), None)
        if hit:
            found.append((process.info["pid"], process.info["name"] or "?", hit))
    return found


def device_openers(device: str) -> list[str]:
    """Who holds the block device `device` open, as "pid N (name)" or "device-mapper dm-N":
    a fuser-like walk of /proc/*/fd plus the kernel's holders in sysfs. A detach of a device
    held open only marks it for autoclear; this says whom the kernel is waiting for."""
    try:
        wanted = os.stat(device).st_rdev
    except OSError:
        return []
    found = []
    for pid in sorted((name for name in os.listdir("/proc") if name.isdigit()), key=int):
        fd_dir = f"/proc/{pid}/fd"
        try:
            names = os.listdir(fd_dir)
        except OSError:
            continue  # gone, or not ours to read
        for name in names:
            try:
                link = os.readlink(f"{fd_dir}/{name}")
                if not link.startswith("/dev/"):
                    continue
                info = os.stat(link)
                if not stat.S_ISBLK(info.st_mode) or info.st_rdev != wanted:
                    continue
            except OSError:
                continue
            found.append(f"pid {pid} ({_process_name(pid)})")
            break
    try:
        found.extend(f"the kernel's {holder}"
                     for holder in sorted(os.listdir(f"/sys/block/{os.path.basename(device)}/holders")))
    except OSError:
        pass
    return found


def _process_name(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as handle:
            return handle.read().strip() or "?"
    except OSError:
        return "?"


def volumes(config: Config, kubelet_root: str = DEFAULT_KUBELET_ROOT) -> list[VolumeView]:
    from flexvol.toolkit.snapshotting import per_volume

    snapshot = Snapshot.take()
    views = [view(config, volume_id, snapshot, kubelet_root) for volume_id in known_ids(config, snapshot)]
    held = per_volume(config)
    for item in views:
        item.snapshots, item.snapshot_bytes = held.get(item.volume_id, (0, 0))
    return views


# The pool's figures are budget.py's, so that `flexvol capacity` shows what the driver enforces.
Capacity = Pool


def capacity(config: Config, views: list[VolumeView] | None = None) -> Pool:
    """The pool as the driver counts it when it creates or grows a volume (budget.py)."""
    return measure(config)
