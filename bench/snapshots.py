"""Snapshot and restore of a volume holding data, beside their floor: `cp` of the same backing
file and an fsync of the copy (`--reflink=always` on an xfs data root made with reflink=1,
`--sparse=always` on an ext4 one), measured in the same run, rounds interleaved.

bench/run.py's `snapshots` section (`--only snapshots`): a 1 GiB volume holding 200 MiB, or
with --quick a 64 MiB one holding 16 MiB (the CI smoke run). Real loop devices and mounts,
all under the run's directory, removed after.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from flexvol.core import kernel, restore, snapshots
from flexvol.core.config import Config
from flexvol.core.journal import CallInfo
from flexvol.core.options import VolumeSpec

REPO = Path(__file__).resolve().parents[1]
DRIVER = REPO / "bin" / "flexvol-loop"
OPTIONS = ('{{"kubernetes.io/fsType":"ext4","kubernetes.io/readwrite":"rw",'
           '"kubernetes.io/pvOrVolumeName":"pv-b1","volumeID":"b1","size":"{size}","allocation":"thin"}}')
# (volume size, MiB written into it) of a full run and of a quick one.
FULL = ("1Gi", 200)
QUICK = ("64Mi", 16)


def driver(root: Path, *args: str) -> None:
    done = subprocess.run([str(DRIVER), *args], env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                                     "FLEXVOL_ROOT": str(root)},
                          capture_output=True, text=True, check=False)
    if '"Success"' not in done.stdout:
        raise RuntimeError(f"driver {args[0]} failed: {done.stdout}{done.stderr}")


def timed(action: Callable[[], object]) -> float:
    subprocess.run(["sync"], check=True)
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def measure(root: Path, target: Path, floor_flag: str, rounds: int, size: str, data_mib: int) -> dict:
    """Each round: snapshot of the mounted volume (frozen), restore of it as a new volume,
    and the floor `cp` of the backing file; then all three are removed again."""
    config = Config(str(root))
    options = OPTIONS.format(size=size)
    driver(root, "mount", str(target), options)
    try:
        subprocess.run(["dd", "if=/dev/urandom", f"of={target}/data", "bs=1M", f"count={data_mib}",
                        "conv=fsync", "status=none"], check=True)
        figures: dict[str, list[float]] = {"snapshot": [], "restore": [], "floor": []}
        method = ""
        spec = VolumeSpec("r1", allocation="thin")
        copy = root / "floor.img"
        # cp, then an fsync of the copy (coreutils `sync FILE`), as the snapshot fsyncs its file
        floor = ["sh", "-c", f'cp {floor_flag} "$0" "$1" && sync "$1"', config.backing_file("b1"), str(copy)]
        for _ in range(rounds):
            figures["snapshot"].append(timed(lambda: snapshots.snapshot(config, "b1", "s1", CallInfo("b"))))
            method = str(snapshots.load_snapshot(config, "s1").method)  # type: ignore[union-attr]
            figures["restore"].append(timed(lambda: restore.create_from(
                config, spec, CallInfo("bench"), from_snapshot="s1")))
            figures["floor"].append(timed(lambda: subprocess.run(floor, check=True)))
            snapshots.delete_snapshot(config, "s1", CallInfo("bench"))
            for path in (copy, Path(config.backing_file("r1")), Path(config.record_path("r1"))):
                path.unlink()
    finally:
        driver(root, "unmount", str(target))
    return {"method": method, "floor_command": f"cp {floor_flag}", **figures}


def xfs_root(base: Path) -> Path:
    image = base / "xfs.img"
    with open(image, "wb") as handle:
        handle.truncate(3 << 30)
    subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(image)], check=True)
    root = base / "xfs-root"
    root.mkdir()
    subprocess.run(["mount", "-o", "loop", str(image), str(root)], check=True)
    return root


def cleanup(base: Path) -> None:
    """Unmount and detach exactly what lives under `base`, deepest first."""
    for mount in sorted((m for m in kernel.read_mounts() if m.mount_point.startswith(str(base))),
                        key=lambda m: -len(m.mount_point)):
        subprocess.run(["umount", mount.mount_point], check=False)
    for device, backing in kernel.loop_devices().items():
        if backing.startswith(str(base)):
            subprocess.run(["losetup", "-d", device], capture_output=True, check=False)


def snapshot_figures(base: Path, rounds: int, quick: bool) -> dict[str, object]:
    """The ext4 data root's sparse copy and the xfs one's reflink, each beside its `cp`."""
    size, data_mib = QUICK if quick else FULL
    base.mkdir()
    (base / "mnt").mkdir()
    try:
        results: dict[str, object] = {"volume": size, "holds_mib": data_mib}
        results["ext4 root"] = measure(base / "ext4-root", base / "mnt" / "a", "--sparse=always",
                                            rounds, size, data_mib)
        results["xfs root"] = measure(xfs_root(base) / "root", base / "mnt" / "b",
                                           "--reflink=always", rounds, size, data_mib)
    finally:
        cleanup(base)
    return results
