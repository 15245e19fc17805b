"""A temporary node for the checks: a kubelet root with the real directory layout, a data root
for the driver, and the kernel facts needed to find what a check left behind.

Layout (docs/flexvolume.md section 5):
  <root>/kubelet/plugins/kubernetes.io/flexvolume/<vendor>/<driver>/mounts/<pv>   global mount
  <root>/kubelet/pods/<pod uid>/volumes/<vendor>~<driver>/<pv>                    pod volume dir
  <root>/data                                                                     FLEXVOL_ROOT

Only what lives under <root>, or whose backing file carries this run's token, is ever
unmounted or detached: other loop devices and mounts on the machine are never touched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field

from flexvol.core import kernel, runner
from flexvol.core.errors import CommandFailed

COMMAND_TIMEOUT = 60


@dataclass
class Leftovers:
    loops: dict[str, str] = field(default_factory=dict)
    mounts: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.loops or self.mounts)

    def describe(self) -> str:
        parts = [f"mount {path}" for path in self.mounts]
        parts += [f"loop device {device} -> {backing}" for device, backing in sorted(self.loops.items())]
        return ", ".join(parts)


def driver_name_of(executable: str) -> str:
    """The driver name the kubelet derives from <dir>/<vendor>~<driver>/<driver> (section 1)."""
    directory = os.path.basename(os.path.dirname(os.path.realpath(executable)))
    if directory.count("~") == 1:
        return directory.replace("~", "/")
    return f"sanity/{os.path.basename(executable)}"


class Node:
    """One temporary node: made by `create`, removed by `remove` unless kept."""

    def __init__(self, root: str, driver_name: str, token: str) -> None:
        self.root = root
        self.kubelet_root = os.path.join(root, "kubelet")
        self.data_root = os.path.join(root, "data")
        self.driver_name = driver_name
        self.token = token

    @classmethod
    def create(cls, driver_name: str, parent: str | None = None, purpose: str = "sanity") -> Node:
        token = uuid.uuid4().hex[:6]
        root = tempfile.mkdtemp(prefix=f"flexvol-{purpose}-{token}-", dir=parent)
        node = cls(root, driver_name, token)
        os.makedirs(node.kubelet_root, 0o750)
        os.makedirs(node.data_root, 0o700)
        return node

    # ---- paths -------------------------------------------------------------------------------

    def device_mount_path(self, pv: str) -> str:
        return os.path.join(self.kubelet_root, "plugins", "kubernetes.io", "flexvolume",
                            self.driver_name, "mounts", pv)

    def pod_dir(self, pod_uid: str, pv: str) -> str:
        return os.path.join(self.kubelet_root, "pods", pod_uid, "volumes",
                            self.driver_name.replace("/", "~"), pv)

    # ---- kernel facts ------------------------------------------------------------------------

    @property
    def volume_prefix(self) -> str:
        """Every volume name of this run starts so; a foreign driver's files named after them are ours."""
        return f"s{self.token}-"

    def ours(self, path: str) -> bool:
        return path == self.root or path.startswith(self.root + "/") or self.volume_prefix in path

    def loops(self) -> dict[str, str]:
        return {device: backing for device, backing in kernel.loop_devices().items() if self.ours(backing)}

    def mounts(self) -> list[kernel.Mount]:
        return [mount for mount in kernel.read_mounts()
                if mount.mount_point == self.root or mount.mount_point.startswith(self.root + "/")]

    def leftovers(self) -> Leftovers:
        return Leftovers(self.loops(), [mount.mount_point for mount in self.mounts()])

    def clean(self) -> list[str]:
        """Unmount and detach what is ours (deepest first, stacked mounts too); return errors."""
        errors = []
        for _ in range(8):
            mounts = self.mounts()
            if not mounts:
                break
            for mount in sorted(mounts, key=lambda item: -len(item.mount_point)):
                done = run(["umount", mount.mount_point])
                if done.code:
                    done = run(["umount", "-l", mount.mount_point])
                if done.code:
                    errors.append(f"umount {mount.mount_point}: {done.out.strip()}")
        for device in sorted(self.loops()):
            done = run(["losetup", "--detach", device])
            if done.code:
                errors.append(f"losetup --detach {device}: {done.out.strip()}")
        return errors

    def remove(self) -> list[str]:
        errors = self.clean()
        if not errors and not self.mounts():
            # A dir whose mount clean() removed by hand keeps the immutable attribute flexvol's
            # write guard gave it (README, Reboots): lift it, or the temporary node stays.
            run(["chattr", "-R", "-f", "-i", self.root])
            shutil.rmtree(self.root, ignore_errors=True)
        return errors


def run(argv: list[str]) -> runner.Done:
    """A command of the kubelet's own (mount, umount, blkid, mkfs), output combined in `out`;
    exit code 127 with the reason when it could not be started or did not finish."""
    try:
        return runner.run(argv, timeout=COMMAND_TIMEOUT, ok=None, merge_stderr=True,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"})
    except CommandFailed as error:
        return runner.Done(argv, 127, str(error), "")


def is_mount_point(path: str) -> bool:
    return bool(kernel.mounts_at(os.path.realpath(path)))


def mounts_at(path: str) -> list[kernel.Mount]:
    return kernel.mounts_at(os.path.realpath(path))
