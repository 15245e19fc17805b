"""Turn raw benchmark samples into figures, ratios against their floors, and a rich table."""

from __future__ import annotations

import statistics

from rich.console import Console
from rich.table import Table

# figure -> (floor it is compared with, the highest ratio allowed)
TARGETS = {
    ("fresh lifecycle", "python floor"): 1.2,
    ("fresh lifecycle", "shell floor"): 2.0,
    ("warm remount", "python floor"): 1.25,
    ("attach sequence", "python floor"): 1.25,
    ("init", "python floor"): 1.5,
    ("csi lifecycle", "shell floor"): 1.15,
}
# The CSI plugin's own time per RPC (its median minus the floor's): at most this many ms.
CSI_RPC_OVERHEAD_MS = 2.0


def _stats(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2),
            "max": round(max(values), 2), "n": len(values)}


def render_report(results: dict[str, object]) -> dict[str, object]:
    report: dict[str, object] = {"rounds": results["rounds"], "quick": results["quick"], "figures": []}
    figures: list[dict[str, object]] = report["figures"]  # type: ignore[assignment]
    table = Table(title=f"flexvol benchmark ({'quick, ' if results['quick'] else ''}"
                        f"{results['rounds']} rounds, medians in ms)")
    for column in ("figure", "median", "min", "max", "vs floor", "ratio", "target", "met"):
        table.add_column(column, justify="left" if column in ("figure", "vs floor") else "right")

    for scenario in ("fresh lifecycle", "warm remount", "attach sequence", "init"):
        samples = results.get(scenario)
        if not isinstance(samples, dict):
            continue
        driver = _stats(samples["driver"])
        for floor_name in ("python floor", "shell floor"):
            if floor_name not in samples:
                continue
            floor = _stats(samples[floor_name])
            ratio = round(driver["median"] / floor["median"], 2)
            target = TARGETS.get((scenario, floor_name))
            met = None if target is None else ratio <= target
            figures.append({"figure": scenario, "driver": driver, "floor": floor_name,
                            "floor_stats": floor, "ratio": ratio, "target": target, "met": met})
            table.add_row(scenario, f"{driver['median']:.1f}", f"{driver['min']:.1f}",
                          f"{driver['max']:.1f}", f"{floor_name} {floor['median']:.1f}",
                          f"{ratio:.2f}x", "" if target is None else f"<= {target}x", _mark(met))

    csi = results.get("csi lifecycle")
    if isinstance(csi, dict):
        _csi_rows(csi, figures, table)

    scale = results.get("scale")
    if isinstance(scale, dict):
        base = _stats(scale[min(scale, key=lambda name: int(name.split()[0]))])
        for name, values in scale.items():
            stats = _stats(values)
            ratio = round(stats["median"] / base["median"], 2)
            is_largest = name == max(scale, key=lambda key: int(key.split()[0]))
            met = ratio <= 1.1 if is_largest and name != "1 volumes" else None
            figures.append({"figure": f"mount+unmount with {name}", "driver": stats,
                            "ratio_to_1_volume": ratio, "target": 1.1 if met is not None else None,
                            "met": met})
            table.add_row(f"mount+unmount, {name}", f"{stats['median']:.1f}", f"{stats['min']:.1f}",
                          f"{stats['max']:.1f}", "1 volume", f"{ratio:.2f}x",
                          "<= 1.1x" if met is not None else "", _mark(met))

    parallel = results.get("parallel")
    if isinstance(parallel, dict):
        met = parallel["failures"] == 0 and parallel["loop_devices_while_mounted"] == parallel["volumes"]
        figures.append({"figure": "parallel", **parallel, "met": met})
        table.add_row(f"{parallel['volumes']} parallel mounts (wall)", f"{parallel['mount_wall_ms']:.0f}",
                      "", "",
                      f"{parallel['failures']} failures, {parallel['loop_devices_while_mounted']} loops",
                      "", "0 failures", _mark(met))
        table.add_row(f"{parallel['volumes']} parallel unmounts (wall)",
                      f"{parallel['unmount_wall_ms']:.0f}", "", "", "", "", "", "")

    snapshot_runs = results.get("snapshots")
    if isinstance(snapshot_runs, dict):
        _snapshot_rows(snapshot_runs, figures, table)

    data_path = results.get("data path")
    if isinstance(data_path, list):
        for job in data_path:
            figures.append({"figure": f"fio {job['job']}", **job})
            table.add_row(f"fio {job['job']} ({job['mode']}, dio={job['loop_direct_io']})",
                          f"{job['value']:.0f} {job['unit']}", "", "",
                          f"backing fs {job['backing']:.0f} {job['unit']}", f"{job['ratio']:.2f}x",
                          ">= 0.9x" if job["mode"] == "direct" else "",
                          _mark(job["ratio"] >= 0.9) if job["mode"] == "direct" else "")

    report["peak_rss_kib"] = results.get("peak rss kib")
    if results.get("peak rss kib"):
        table.caption = f"peak RSS of one driver call: {results['peak rss kib']} KiB"
    Console(width=130).print(table)
    return report


def _csi_rows(csi: dict, figures: list[dict[str, object]], table: Table) -> None:
    """The whole lifecycle against its floor, then each RPC's overhead over its own steps."""
    plugin, floor = _stats(csi["plugin"]), _stats(csi["shell floor"])
    ratio = round(plugin["median"] / floor["median"], 2)
    target = TARGETS[("csi lifecycle", "shell floor")]
    figures.append({"figure": "csi lifecycle", "driver": plugin, "floor": "shell floor",
                    "floor_stats": floor, "ratio": ratio, "target": target, "met": ratio <= target})
    table.add_row("CSI lifecycle (6 RPCs)", f"{plugin['median']:.1f}", f"{plugin['min']:.1f}",
                  f"{plugin['max']:.1f}", f"shell floor {floor['median']:.1f}", f"{ratio:.2f}x",
                  f"<= {target}x", _mark(ratio <= target))
    cpu = csi.get("cpu ms per lifecycle")
    if cpu:
        figures.append({"figure": "csi lifecycle cpu ms", **cpu})
        table.add_row("  CPU time per lifecycle", f"{cpu['plugin']:.1f}", "", "",
                      f"shell floor {cpu['shell floor']:.1f}", "", "", "")
    for rpc, sides in csi["per rpc"].items():
        mine, base = _stats(sides["plugin"]), _stats(sides["shell floor"])
        overhead = round(mine["median"] - base["median"], 2)
        met = overhead < CSI_RPC_OVERHEAD_MS
        figures.append({"figure": f"csi {rpc}", "driver": mine, "floor": "shell floor",
                        "floor_stats": base, "overhead_ms": overhead,
                        "target_overhead_ms": CSI_RPC_OVERHEAD_MS, "met": met})
        table.add_row(f"  {rpc}", f"{mine['median']:.1f}", f"{mine['min']:.1f}", f"{mine['max']:.1f}",
                      f"shell floor {base['median']:.1f}", f"{overhead:+.1f} ms",
                      f"< {CSI_RPC_OVERHEAD_MS:.0f} ms", _mark(met))


def _snapshot_rows(runs: dict, figures: list[dict[str, object]], table: Table) -> None:
    """Snapshot and restore on each data root, each against that root's `cp` of the file."""
    for root, run in runs.items():
        if not isinstance(run, dict):
            continue
        floor = _stats(run["floor"])
        for action in ("snapshot", "restore"):
            mine = _stats(run[action])
            ratio = round(mine["median"] / floor["median"], 2)
            name = f"{action}, {root} ({run['method']})"
            figures.append({"figure": name, "volume": runs["volume"], "holds_mib": runs["holds_mib"],
                            "driver": mine, "floor": run["floor_command"], "floor_stats": floor,
                            "ratio": ratio, "target": None, "met": None})
            table.add_row(f"{name} {runs['volume']}/{runs['holds_mib']}MiB",
                          f"{mine['median']:.1f}", f"{mine['min']:.1f}", f"{mine['max']:.1f}",
                          f"{run['floor_command']} {floor['median']:.1f}", f"{ratio:.2f}x", "", "")


def _mark(met: bool | None) -> str:
    if met is None:
        return ""
    return "[green]yes[/green]" if met else "[red]no[/red]"
