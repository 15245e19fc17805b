#!/usr/bin/env python3
"""flexvol benchmark: each figure beside its floor, measured in the same run.

    .venv/bin/python bench/run.py [--quick] [--rounds N] [--only FIGURE] [--json FILE]

Rounds are interleaved and shuffled, so slow moments of the machine hit driver and floor
alike; figures are medians (with min and max) and the targets are ratios, never absolute
times (but for each CSI RPC's time above its floor's). The CSI figure drives a `flexvol csi`
started once for the run over its unix socket (bench/csi_lifecycle.py); the snapshot figures
beside `cp` are bench/snapshots.py. Needs root: it uses
real loop devices under its own temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from csi_lifecycle import csi_lifecycle  # noqa: E402
from floors import ATTACH, FRESH, PYTHON_START, WARM, render  # noqa: E402
from snapshots import snapshot_figures  # noqa: E402

from flexvol.core import guard, kernel, state  # noqa: E402
from flexvol.core.config import Config  # noqa: E402

GiB = 1 << 30
# What --only names, in the order a run measures them.
FIGURES = ("fresh", "warm", "csi", "attach", "init", "scale", "parallel", "snapshots")
OPTIONS = ('{{"kubernetes.io/fsType":"ext4","kubernetes.io/readwrite":"rw",'
           '"kubernetes.io/pvOrVolumeName":"{pv}","volumeID":"{vid}","size":"{size}"}}')


class Call:
    __slots__ = ("code", "max_rss_kib", "ms", "output")

    def __init__(self, ms: float, code: int, output: str, max_rss_kib: int) -> None:
        self.ms = ms
        self.code = code
        self.output = output
        self.max_rss_kib = max_rss_kib


def timed(argv: list[str], env: dict[str, str] | None = None) -> Call:
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, env=env)
    output = process.stdout.read().decode() if process.stdout else ""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.stdout:
        process.stdout.close()
    return Call((time.perf_counter() - started) * 1000, process.returncode, output, usage.ru_maxrss)


class Bench:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.shim = work / "driver" / "loop"
        self.rss: list[int] = []
        self._write_shim()

    def _write_shim(self) -> None:
        """A driver entry point exactly like the one install.sh writes, on this checkout."""
        subprocess.run(["/usr/bin/python3", "-m", "compileall", "-q", str(REPO / "flexvol")], check=True)
        self.shim.parent.mkdir(parents=True)
        self.shim.write_text(
            "#!/usr/bin/python3 -ISB\nimport sys\n"
            f"sys.path.insert(0, {str(REPO)!r})\n"
            "from flexvol.flex.verbs import main_and_exit\n"
            f"main_and_exit(sys.argv[1:], data_root={str(self.work / 'data')!r})\n")
        self.shim.chmod(0o755)

    def env(self, root: str = "data", attach: bool = False) -> dict[str, str]:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "FLEXVOL_ROOT": str(self.work / root)}
        if attach:
            env["FLEXVOL_ATTACH"] = "1"
        return env

    def driver(self, *args: str, root: str = "data", attach: bool = False) -> Call:
        call = timed([str(self.shim), *args], self.env(root, attach))
        if '"status":"Success"' not in call.output:
            raise RuntimeError(f"driver {args[0]} failed: {call.output}")
        self.rss.append(call.max_rss_kib)
        return call

    def shell(self, script: str) -> float:
        call = timed(["bash", "-c", script])
        if call.code:
            raise RuntimeError(f"floor script failed: {call.output}\n{script}")
        return call.ms

    def path(self, name: str) -> str:
        return str(self.work / name)

    def remove_volume(self, root: str, volume_id: str) -> None:
        config = Config(self.path(root))
        for path in (config.backing_file(volume_id), config.record_path(volume_id)):
            Path(path).unlink(missing_ok=True)


def opts(volume_id: str, size: str = "1Gi") -> str:
    return OPTIONS.format(pv=f"pv-{volume_id}", vid=volume_id, size=size)


def interleave(rounds: int, cases: dict[str, Callable[[int], float]]) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {name: [] for name in cases}
    for number in range(rounds):
        order = list(cases)
        random.shuffle(order)
        for name in order:
            results[name].append(cases[name](number))
    return results


def summary(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2),
            "max": round(max(values), 2), "n": len(values)}


# ---- scenarios -----------------------------------------------------------------------------

def fresh_lifecycle(bench: Bench, rounds: int) -> dict[str, list[float]]:
    def driver(number: int) -> float:
        vid, target = f"fresh{number}", bench.path(f"mnt/fresh{number}")
        total = bench.driver("mount", target, opts(vid)).ms + bench.driver("unmount", target).ms
        bench.remove_volume("data", vid)
        return total

    def floor(python: bool) -> Callable[[int], float]:
        return lambda number: bench.shell(render(
            FRESH, python=python, size=str(GiB), file=bench.path(f"floor-fresh{number}.img"),
            target=bench.path(f"mnt/floor-fresh{number}")))

    return interleave(rounds, {"driver": driver, "shell floor": floor(False), "python floor": floor(True)})


def warm_remount(bench: Bench, rounds: int) -> dict[str, list[float]]:
    target = bench.path("mnt/warm")
    bench.driver("mount", target, opts("warm"))
    bench.driver("unmount", target)
    floor_file = bench.path("floor-warm.img")
    subprocess.run(["truncate", "-s", str(GiB), floor_file], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-E", "nodiscard", floor_file], check=True)

    def driver(_number: int) -> float:
        return bench.driver("mount", target, opts("warm")).ms + bench.driver("unmount", target).ms

    def floor(python: bool) -> Callable[[int], float]:
        return lambda _n: bench.shell(render(WARM, python=python, file=floor_file,
                                             target=bench.path("mnt/floor-warm")))

    return interleave(rounds, {"driver": driver, "shell floor": floor(False), "python floor": floor(True)})


def attach_sequence(bench: Bench, rounds: int) -> dict[str, list[float]]:
    spec = opts("att")
    global_dir, pod = bench.path("mnt/att-global"), bench.path("mnt/att-pod")
    bench.driver("mount", pod, spec, attach=True)
    bench.driver("unmount", pod, attach=True)
    floor_file = bench.path("floor-att.img")
    subprocess.run(["truncate", "-s", str(GiB), floor_file], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-E", "nodiscard", floor_file], check=True)

    def driver(_number: int) -> float:
        calls = [("attach", spec, "node-1"), ("waitforattach", "flexvol:att", spec),
                 ("mountdevice", global_dir, "flexvol:att", spec), ("mount", pod, spec),
                 ("unmount", pod), ("unmountdevice", global_dir), ("detach", "pv-att", "node-1")]
        return sum(bench.driver(*call, attach=True).ms for call in calls)

    def floor(python: bool) -> Callable[[int], float]:
        return lambda _n: bench.shell(render(
            ATTACH, python=python, file=floor_file, target=bench.path("mnt/floor-att-pod"),
            global_dir=bench.path("mnt/floor-att-global")))

    return interleave(rounds, {"driver": driver, "shell floor": floor(False), "python floor": floor(True)})


def init_call(bench: Bench, rounds: int) -> dict[str, list[float]]:
    return interleave(rounds * 4, {
        "driver": lambda _n: bench.driver("init").ms,
        "python floor": lambda _n: timed(PYTHON_START.split()).ms,
    })


def scale(bench: Bench, rounds: int, sizes: list[int], mounted: int) -> dict[str, list[float]]:
    cases: dict[str, Callable[[int], float]] = {}
    for count in sizes:
        root = f"scale{count}"
        config = Config(bench.path(root))
        state.ensure_dirs(config)
        for index in range(count - 1):
            vid = f"idle{index}"
            with open(config.backing_file(vid), "wb") as handle:
                handle.truncate(64 << 20)
            state.save_record(config, state.new_record(vid, 64 << 20, "ext4"), durable=False)
        if count >= 100 and mounted:
            jobs = [(bench.path(f"mnt/{root}-m{index}"), opts(f"busy{index}", "16Mi"))
                    for index in range(mounted)]
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda job, root=root: bench.driver("mount", *job, root=root), jobs))
        target = bench.path(f"mnt/{root}-probe")
        bench.driver("mount", target, opts("probe", "64Mi"), root=root)
        bench.driver("unmount", target, root=root)

        def case(_n: int, root: str = root, target: str = target) -> float:
            return (bench.driver("mount", target, opts("probe", "64Mi"), root=root).ms
                    + bench.driver("unmount", target, root=root).ms)

        cases[f"{count} volumes"] = case
    return interleave(rounds, cases)


def parallel(bench: Bench, count: int) -> dict[str, object]:
    jobs = [(bench.path(f"mnt/par{index}"), opts(f"par{index}", "16Mi")) for index in range(count)]

    def call(args: tuple[str, ...]) -> Call:
        return timed([str(bench.shim), *args], bench.env("parallel"))

    started = time.perf_counter()
    with ThreadPoolExecutor(count) as pool:
        mounted = list(pool.map(lambda job: call(("mount", *job)), jobs))
    mount_wall = (time.perf_counter() - started) * 1000
    marker = bench.path("parallel")
    loops = [device for device, backing in kernel.loop_devices().items() if marker in backing]
    started = time.perf_counter()
    with ThreadPoolExecutor(count) as pool:
        unmounted = list(pool.map(lambda job: call(("unmount", job[0])), jobs))
    unmount_wall = (time.perf_counter() - started) * 1000
    failures = [c.output for c in mounted + unmounted if '"status":"Success"' not in c.output]
    return {"volumes": count, "mount_wall_ms": round(mount_wall, 1),
            "unmount_wall_ms": round(unmount_wall, 1), "failures": len(failures),
            "loop_devices_while_mounted": len(loops), "first_failure": failures[:1]}


def cleanup(work: Path) -> list[str]:
    """Unmount and detach exactly what this run made under its own directory."""
    errors = []
    for mount in reversed(kernel.read_mounts()):
        if mount.mount_point.startswith(str(work)):
            done = subprocess.run(["umount", mount.mount_point], capture_output=True, check=False)
            if done.returncode:
                errors.append(done.stderr.decode())
    for device, backing in kernel.loop_devices().items():
        if backing.startswith(str(work)):
            subprocess.run(["losetup", "--detach", device], capture_output=True, check=False)
    # Dirs unmounted here, not by the driver, keep the driver's write guard: lift it so the
    # directory tree can be removed.
    mount_dirs = work / "mnt"
    if mount_dirs.is_dir():
        for path in mount_dirs.iterdir():
            if path.is_dir():
                guard.lift_write_guard(str(path))
    return errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run (CI)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--json", dest="json_path", default=None, help="write results here")
    parser.add_argument("--fio", action="store_true", help="also run the fio data-path jobs")
    parser.add_argument("--only", action="append", choices=FIGURES, metavar="FIGURE",
                        help=f"measure only this figure (repeatable): {', '.join(FIGURES)}")
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 15)

    def wanted(name: str) -> bool:
        return not args.only or name in args.only

    work = Path(tempfile.mkdtemp(prefix="flexvol-bench-", dir="/tmp"))
    results: dict[str, object] = {"rounds": rounds, "quick": args.quick}
    try:
        bench = Bench(work)
        (work / "mnt").mkdir()
        if wanted("fresh"):
            results["fresh lifecycle"] = fresh_lifecycle(bench, rounds)
        if wanted("warm"):
            results["warm remount"] = warm_remount(bench, rounds)
        if wanted("csi"):
            results["csi lifecycle"] = csi_lifecycle(work, rounds, GiB, interleave)
        if wanted("attach") and not args.quick:
            results["attach sequence"] = attach_sequence(bench, rounds)
        if wanted("init"):
            results["init"] = init_call(bench, rounds)
        if wanted("scale"):
            sizes = [1, 100] if args.quick else [1, 100, 1000]
            results["scale"] = scale(bench, rounds, sizes, mounted=0 if args.quick else 100)
        if wanted("parallel"):
            results["parallel"] = parallel(bench, 16 if args.quick else 100)
        if wanted("snapshots"):
            results["snapshots"] = snapshot_figures(work / "snapshots", rounds, args.quick)
        if args.fio and not args.quick:
            from fio_jobs import data_path

            results["data path"] = data_path(bench)
        results["peak rss kib"] = max(bench.rss, default=None)
    finally:
        errors = cleanup(work)
        if not errors:
            shutil.rmtree(work, ignore_errors=True)
    from report import render_report

    report = render_report(results)
    if args.json_path:
        Path(args.json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_path).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
