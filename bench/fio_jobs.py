"""The data path: fio through a mounted volume against the same job on the backing filesystem.

The volume's loop device runs with direct I/O (as the driver attaches it); a second volume
attached buffered (--direct-io=off) is measured for contrast. All jobs use O_DIRECT (libaio,
queue depth 16) so the page cache of the test machine does not flatter any side.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from flexvol.core import kernel

JOBS = {
    "seq-read-1M": ["--rw=read", "--bs=1M"],
    "seq-write-1M": ["--rw=write", "--bs=1M"],
    "rand-read-4k": ["--rw=randread", "--bs=4k"],
    "rand-write-4k": ["--rw=randwrite", "--bs=4k"],
}
SIZE = "256M"
RUNTIME_S = "5"


def fio(directory: str, name: str, args: list[str]) -> tuple[float, float]:
    """Run one job in `directory`; return (IOPS, bandwidth in MiB/s)."""
    done = subprocess.run(
        ["fio", f"--name={name}", f"--directory={directory}", f"--size={SIZE}", "--direct=1",
         "--ioengine=libaio", "--iodepth=16", f"--runtime={RUNTIME_S}", "--time_based", "--group_reporting",
         "--output-format=json", *args],
        capture_output=True, check=True, text=True)
    job = json.loads(done.stdout)["jobs"][0]
    side = job["read"] if job["read"]["io_bytes"] else job["write"]
    return side["iops"], side["bw"] / 1024


def data_path(bench: object) -> list[dict[str, object]]:
    """fio results for direct and buffered loop devices, each against the backing fs."""
    work = Path(bench.work)  # type: ignore[attr-defined]
    direct_dir = str(work / "mnt" / "fio-direct")
    bench.driver("mount", direct_dir, '{"volumeID":"fio","size":"2Gi"}')  # type: ignore[attr-defined]
    device = next(m.source for m in kernel.read_mounts() if m.mount_point == direct_dir)
    direct_io = kernel.loop_direct_io(device)
    buffered_file = work / "fio-buffered.img"
    buffered_dir = work / "mnt" / "fio-buffered"
    subprocess.run(["truncate", "-s", "2G", str(buffered_file)], check=True)
    loop = subprocess.run(["losetup", "--find", "--show", "--direct-io=off", str(buffered_file)],
                          capture_output=True, text=True, check=True).stdout.strip()
    backing_dir = work / "fio-backing"
    backing_dir.mkdir()
    results = []
    try:
        subprocess.run(["mkfs.ext4", "-q", "-E", "nodiscard", loop], check=True)
        buffered_dir.mkdir(parents=True)
        subprocess.run(["mount", loop, str(buffered_dir)], check=True)
        for name, args in JOBS.items():
            backing_iops, backing_bw = fio(str(backing_dir), name, args)
            for mode, directory in (("direct", direct_dir), ("buffered", str(buffered_dir))):
                iops, bw = fio(directory, name, args)
                sequential = name.startswith("seq")
                value, base = (bw, backing_bw) if sequential else (iops, backing_iops)
                results.append({"job": name, "mode": mode, "value": round(value, 1),
                                "backing": round(base, 1), "unit": "MiB/s" if sequential else "IOPS",
                                "ratio": round(value / base, 2) if base else 0.0,
                                "loop_direct_io": direct_io if mode == "direct" else False})
    finally:
        subprocess.run(["umount", str(buffered_dir)], check=False)
        subprocess.run(["losetup", "--detach", loop], check=False)
        bench.driver("unmount", direct_dir)  # type: ignore[attr-defined]
    return results
