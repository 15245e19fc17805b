#!/usr/bin/env python3
"""Snapshot and restore of a 1 GiB volume holding 200 MiB, beside their floor: `cp` of the
same backing file and an fsync of the copy (`--reflink=always` on an xfs data root made with
reflink=1, `--sparse=always` on the ext4 one), measured in the same run, rounds interleaved.

    .venv/bin/python bench/snapshots.py [--rounds N] [--json FILE]

Needs root: real loop devices and mounts, all under its own temporary directory, removed after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from flexvol.core import kernel, snapshots  # noqa: E402
from flexvol.core.config import Config  # noqa: E402
from flexvol.core.journal import CallInfo  # noqa: E402
from flexvol.core.options import VolumeSpec  # noqa: E402

MiB = 1 << 20
DRIVER = REPO / "bin" / "flexvol-loop"
OPTIONS = ('{"kubernetes.io/fsType":"ext4","kubernetes.io/readwrite":"rw",'
           '"kubernetes.io/pvOrVolumeName":"pv-b1","volumeID":"b1","size":"1Gi","allocation":"thin"}')


def driver(root: Path, *args: str) -> None:
    done = subprocess.run([str(DRIVER), *args], env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                                     "FLEXVOL_ROOT": str(root)},
                          capture_output=True, text=True, check=False)
    if '"Success"' not in done.stdout:
        raise SystemExit(f"driver {args[0]} failed: {done.stdout}{done.stderr}")


def timed(action: Callable[[], object]) -> float:
    subprocess.run(["sync"], check=True)
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def measure(root: Path, target: Path, floor_flag: str, rounds: int) -> dict:
    """Each round: snapshot of the mounted volume (frozen), restore of it as a new volume,
    and the floor `cp` of the backing file; then all three are removed again."""
    config = Config(str(root))
    driver(root, "mount", str(target), OPTIONS)
    try:
        subprocess.run(["dd", "if=/dev/urandom", f"of={target}/data", "bs=1M", "count=200",
                        "conv=fsync", "status=none"], check=True)
        figures: dict[str, list[float]] = {"snapshot": [], "restore": [], "floor": []}
        method = ""
        spec = VolumeSpec("r1", allocation="thin")
        copy = root / "floor.img"
        # cp, then an fsync of the copy (coreutils `sync FILE`), as the snapshot fsyncs its file
        floor = ["sh", "-c", f'cp {floor_flag} "$0" "$1" && sync "$1"', config.backing_file("b1"), str(copy)]
        for _ in range(rounds):
            figures["snapshot"].append(timed(lambda: snapshots.snapshot(config, "b1", "s1", CallInfo("b"))))
            method = str(snapshots.load_snapshot(config, "s1")["method"])  # type: ignore[index]
            figures["restore"].append(timed(lambda: snapshots.create_from(
                config, spec, CallInfo("bench"), from_snapshot="s1")))
            figures["floor"].append(timed(lambda: subprocess.run(floor, check=True)))
            snapshots.delete_snapshot(config, "s1", CallInfo("bench"))
            for path in (copy, Path(config.backing_file("r1")), Path(config.record_path("r1"))):
                path.unlink()
        held = os.stat(config.backing_file("b1")).st_blocks * 512
    finally:
        driver(root, "unmount", str(target))
    return {"method": method, "volume_holds_bytes": held,
            **{name: {"median_ms": round(statistics.median(values), 1), "min_ms": round(min(values), 1),
                      "max_ms": round(max(values), 1)} for name, values in figures.items()}}


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
    subprocess.run(["rm", "-rf", str(base)], check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="flexvol-bench-snap-", dir="/tmp"))
    results = {}
    try:
        (base / "mnt").mkdir()
        results["copy (ext4 data root)"] = measure(base / "ext4-root", base / "mnt" / "a", "--sparse=always",
                                                   args.rounds)
        results["reflink (xfs data root)"] = measure(xfs_root(base) / "root", base / "mnt" / "b",
                                                     "--reflink=always", args.rounds)
    finally:
        cleanup(base)
    print(f"1 GiB ext4 volume holding {200} MiB, median of {args.rounds} rounds (min-max), ms")
    print(f"{'path':<26}{'snapshot':>22}{'restore':>22}{'cp floor':>22}")
    for name, row in results.items():
        cells = [f"{row[key]['median_ms']} ({row[key]['min_ms']}-{row[key]['max_ms']})"
                 for key in ("snapshot", "restore", "floor")]
        print(f"{name:<26}" + "".join(f"{cell:>22}" for cell in cells))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
