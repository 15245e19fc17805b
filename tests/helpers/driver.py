"""Call the driver executable exactly as the kubelet does, and clean up after a test."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from flexvol.core import kernel

REPO = Path(__file__).resolve().parents[2]
DRIVER = REPO / "bin" / "flexvol-loop"
MINIMAL_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class Result:
    argv: list[str]
    code: int
    output: str
    reply: dict = field(default_factory=dict)

    @property
    def status(self) -> str:
        return self.reply.get("status", "")

    @property
    def message(self) -> str:
        return self.reply.get("message", "")


def parse_reply(output: str) -> dict:
    """The combined output must be exactly one JSON object (docs/flexvolume.md section 2)."""
    reply = json.loads(output)
    assert isinstance(reply, dict), output
    return reply


class Driver:
    """One data root and its own directories; every call runs with a minimal environment."""

    def __init__(self, base: Path, executable: Path = DRIVER, attach: bool = False) -> None:
        self.base = base
        self.root = base / "root"
        self.executable = executable
        self.attach = attach

    def env(self) -> dict[str, str]:
        env = {"PATH": MINIMAL_PATH, "FLEXVOL_ROOT": str(self.root)}
        if self.attach:
            env["FLEXVOL_ATTACH"] = "1"
        return env

    def call(self, *args: str, timeout: float = 120) -> Result:
        argv = [str(self.executable), *args]
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, env=self.env(), timeout=timeout, check=False)
        output = done.stdout.decode()
        result = Result(argv, done.returncode, output, parse_reply(output))
        assert result.status in ("Success", "Failure", "Not supported"), output
        if result.status == "Success":
            assert result.code == 0, output
        if result.status == "Failure":
            assert result.code != 0 and result.message, output
        return result

    def ok(self, *args: str) -> Result:
        result = self.call(*args)
        assert result.status == "Success", result.output
        return result

    def fail(self, *args: str) -> Result:
        result = self.call(*args)
        assert result.status == "Failure", result.output
        return result

    def dir(self, name: str) -> str:
        return str(self.base / "mnt" / name)

    def backing_file(self, volume_id: str) -> Path:
        return self.root / "volumes" / f"{volume_id}.img"

    def record(self, volume_id: str) -> dict:
        return json.loads((self.root / "records" / f"{volume_id}.json").read_text())

    def loops(self) -> list[str]:
        marker = str(self.root)
        return sorted(device for device, backing in kernel.loop_devices().items() if marker in backing)

    def mounts(self) -> list[kernel.Mount]:
        return [mount for mount in kernel.read_mounts() if mount.mount_point.startswith(str(self.base))]

    def cleanup(self) -> list[str]:
        """Unmount and detach exactly what lives under this driver's directories.

        Order matters when the data root is itself a mount (a small tmpfs in fault tests):
        volume mounts go first, then the loop devices (found while their backing paths still
        name our directory), and only then the mounts that hold the backing files.
        """
        errors = []
        loops = [device for device, backing in kernel.loop_devices().items() if str(self.base) in backing]
        numbers = {kernel.device_number(device) for device in loops}

        def unmount(mounts: list[kernel.Mount]) -> None:
            for mount in reversed(mounts):
                done = subprocess.run(["umount", mount.mount_point], capture_output=True, check=False)
                if done.returncode:
                    errors.append(f"umount {mount.mount_point}: {done.stderr.decode().strip()}")

        unmount([m for m in self.mounts() if m.source in loops or m.device_number in numbers])
        for device in loops:
            done = subprocess.run(["losetup", "-d", device], capture_output=True, check=False)
            if done.returncode:
                errors.append(f"losetup -d {device}: {done.stderr.decode().strip()}")
        unmount(self.mounts())
        lift_write_guards(self.base)
        return errors


def lift_write_guards(base: Path) -> None:
    """Clear the immutable attribute the driver sets on mount dirs, so a test dir can be removed."""
    if base.exists() and not any(mount.mount_point.startswith(str(base) + "/")
                                 for mount in kernel.read_mounts()):
        subprocess.run(["chattr", "-R", "-f", "-i", str(base)], capture_output=True, check=False)


def options(volume_id: str, *, size: str = "64Mi", fs: str = "", mode: str = "rw",
            pv: str | None = None, **extra: str) -> str:
    """The options JSON the kubelet would send for a PV with flexVolume.options `extra`."""
    body = {
        "kubernetes.io/fsType": fs,
        "kubernetes.io/readwrite": mode,
        "kubernetes.io/pvOrVolumeName": pv or f"pv-{volume_id}",
        "volumeID": volume_id,
        "size": size,
    }
    body.update(extra)
    return json.dumps(body)


def is_mount_point(path: str) -> bool:
    return any(mount.mount_point == path for mount in kernel.read_mounts())
