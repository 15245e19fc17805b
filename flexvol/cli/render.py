"""All rich output of the toolkit: tables and panels built from the library's dataclasses."""

from __future__ import annotations

import json
import shlex
import time

from rich.console import Console
from rich.table import Table
from rich.text import Text

from flexvol.budget import LOW_FRACTION
from flexvol.doctor import FAIL, PASS, Check
from flexvol.inventory import Capacity, VolumeView, readable_bytes
from flexvol.quantity import human_bytes
from flexvol.repair import Finding
from flexvol.sanity import engine as sanity
from flexvol.simulate.flow import Outcome, PodRun, Step
from flexvol.simulate.plan import PodPlan, PodVolume
from flexvol.volumeio import VolumeRates

STATE_STYLE = {"idle": "dim", "attached": "cyan", "mounted": "green", "inconsistent": "bold red"}
CHECK_STYLE = {PASS: "green", FAIL: "bold red"}


size = readable_bytes


def direct_io(value: bool | None) -> str:
    return "" if value is None else (" dio" if value else " buffered")


def volumes_table(views: list[VolumeView]) -> Table:
    table = Table(box=None, pad_edge=False)
    for name in ("VOLUME", "SIZE", "ALLOCATED", "USED", "FS", "LOOP", "MOUNTS", "PV/CLAIM", "STATE"):
        table.add_column(name, no_wrap=name != "MOUNTS", overflow="fold",
                         justify="right" if name in ("SIZE", "ALLOCATED", "USED") else "left")
    for item in views:
        fs = item.fs_type + ("" if item.formatted or not item.fs_type else " (blank)")
        loop = ", ".join(item.loop_devices) + direct_io(item.direct_io) if item.loop_devices else "-"
        mounts = "\n".join(f"{m.path}{' ro' if m.read_only else ''}{f' [{m.pod}]' if m.pod else ''}"
                           for m in item.mounts) or "-"
        table.add_row(item.volume_id, size(item.size_bytes), size(item.allocated_bytes),
                      size(item.fs_used_bytes), fs or "-", loop,
                      Text(mounts), pv_claim(item), state_text(item))
    return table


def pv_claim(item: VolumeView) -> str:
    """The PV(s) using the volume and, when the agent provisioned it, its claim: pv (ns/name)."""
    pvs = ", ".join(item.pvs)
    if item.claim:
        return f"{pvs or '?'} ({item.claim})"
    return pvs or "-"


def state_text(item: VolumeView) -> Text:
    """The state word, and "fs growing to X" while a grown volume's filesystem lags behind."""
    text = Text(item.state, style=STATE_STYLE.get(item.state, ""))
    if item.growing:
        text.append(f", fs growing to {size(item.growing.get('to'))}", style="bold yellow")
    return text


def print_unwrapped(out: Console, renderable: Table) -> None:
    """Off a terminal, a row stays on one line however wide (scripts split lines, not cells)."""
    if out.is_terminal:
        out.print(renderable)
        return
    from rich.measure import Measurement

    needed = Measurement.get(out, out.options.update(width=1 << 16), renderable).maximum
    if needed > out.width:
        out = Console(width=needed, highlight=False, soft_wrap=False, no_color=out.no_color,
                      file=out.file)
    out.print(renderable)


def findings_table(found: list[Finding], results: dict[int, str] | None = None) -> Table:
    table = Table(box=None, pad_edge=False)
    table.add_column("FINDING", no_wrap=True)
    table.add_column("VOLUME", no_wrap=True)
    table.add_column("DETAIL", overflow="fold")
    table.add_column("RESULT" if results is not None else "ACTION (--apply)", overflow="fold")
    for index, item in enumerate(found):
        outcome = (results or {}).get(index) if results is not None else None
        last = outcome if outcome is not None else (item.action or "none: needs a person")
        table.add_row(item.kind, item.volume_id or "-", Text(item.detail), Text(last))
    return table


def checks_table(checks: list[Check]) -> Table:
    table = Table(box=None, pad_edge=False)
    table.add_column("", no_wrap=True)
    table.add_column("CHECK", no_wrap=True)
    table.add_column("DETAIL", overflow="fold")
    table.add_column("FIX", overflow="fold")
    for check in checks:
        table.add_row(Text(check.status, style=CHECK_STYLE.get(check.status, "yellow")), check.name,
                      Text(check.detail), Text(check.fix))
    return table


def calls_table(entries: list[dict]) -> Table:
    table = Table(box=None, pad_edge=False)
    for name in ("TIME", "VERB", "VOLUME", "STATUS", "MS", "MESSAGE"):
        table.add_column(name, no_wrap=name != "MESSAGE", justify="right" if name == "MS" else "left")
    for entry in entries:
        status = entry.get("status", "")
        table.add_row(entry.get("time", ""), entry.get("verb", ""), entry.get("volume", "") or "-",
                      Text(status, style="green" if status == "Success" else "bold red"),
                      f"{entry.get('ms', 0):g}",
                      Text(entry.get("message", "") + (f" (by {entry['who']})" if entry.get("who") else "")))
    return table


def stats_table(stats: dict[str, dict]) -> Table:
    table = Table(box=None, pad_edge=False)
    for name in ("VERB", "CALLS", "FAILED", "P50 MS", "P90 MS", "P99 MS", "MAX MS"):
        table.add_column(name, justify="left" if name == "VERB" else "right", no_wrap=True)
    for verb, row in sorted(stats.items()):
        table.add_row(verb, str(row["calls"]), str(row["failed"]), f"{row['p50']:g}", f"{row['p90']:g}",
                      f"{row['p99']:g}", f"{row['max']:g}")
    return table


def capacity_table(found: Capacity) -> Table:
    table = Table(box=None, pad_edge=False, show_header=False)
    table.add_column(no_wrap=True)
    table.add_column()
    table.add_row("pool", found.path)
    table.add_row("pool size", human_bytes(found.total_bytes))
    table.add_row("pool free (really)", human_bytes(found.free_bytes))
    table.add_row("committed (sum of volume sizes)", human_bytes(found.committed_bytes))
    table.add_row("allocated (blocks in use)", human_bytes(found.allocated_bytes))
    table.add_row("promised, not yet written (thin)", human_bytes(found.promised_bytes))
    table.add_row("budget (sum of sizes)",
                  f"{human_bytes(found.budget_bytes)} ({found.ratio:g}x pool size)")
    available = human_bytes(found.available_bytes)
    table.add_row("available to new or grown volumes",
                  f"[bold red]{available}[/]" if found.low else available)
    if found.unbacked_bytes:
        table.add_row("[bold red]unbacked[/]",
                      f"[bold red]thin volumes were promised {human_bytes(found.unbacked_bytes)} more "
                      "than the pool has free: their writes will fail once it is full[/]")
    elif found.low:
        table.add_row("[bold red]low[/]", f"[bold red]under {LOW_FRACTION:.0%} of the pool is free[/]")
    return table


# ---- flexvol sanity ----------------------------------------------------------------------

SANITY_STYLE = {sanity.PASS: "bold green", sanity.FAIL: "bold red", sanity.SKIP: "yellow"}


class LiveStatus:
    """The live line: which check runs, which verb is being called, elapsed time."""

    def __init__(self) -> None:
        self.check = ""
        self.verb = ""
        self.started = time.monotonic()
        self.check_started = self.started
        self.done: list[str] = []

    def event(self, check: str, verb: str) -> None:
        if check != self.check:
            if self.check:
                self.done.append(self.check)
            self.check = check
            self.check_started = time.monotonic()
        self.verb = verb

    def __rich__(self) -> Text:
        now = time.monotonic()
        text = Text()
        text.append(f"{len(self.done)} checks done  ", style="dim")
        text.append(self.check or "starting", style="bold")
        if self.verb:
            text.append("  calling ")
            text.append(self.verb, style="cyan")
        text.append(f"  {now - self.check_started:5.1f}s", style="dim")
        text.append(f"  (total {now - self.started:.0f}s)", style="dim")
        return text


def sanity_report(report: sanity.Report, out: Console) -> None:
    mode = "attachable (controller-manager attaches)" if report.attach else "non-attachable (kubelet only)"
    out.print(Text.assemble((report.driver, "bold"), " as driver ", (report.driver_name, "bold"),
                            f", {mode}"))
    table = Table(show_lines=False)
    table.add_column("check")
    table.add_column("§", justify="right")
    table.add_column("result")
    table.add_column("time", justify="right")
    table.add_column("reason", overflow="fold")
    for result in report.results:
        table.add_row(result.name, result.section, Text(result.status, style=SANITY_STYLE[result.status]),
                      f"{result.seconds:.1f}s" if result.status != sanity.SKIP else "",
                      result.reason or result.title)
    out.print(table)
    for result in report.results:
        if result.status == sanity.FAIL and result.argv:
            out.print(Text(f"{result.name}: failing call", style="bold red"))
            out.print(Text("  $ " + shlex.join(result.argv)))
            for line in (result.output or "(no output)").splitlines()[:12]:
                out.print(Text("  " + line, style="dim"))
    if report.latency:
        latency = Table(title="call latency", title_justify="left")
        latency.add_column("verb")
        latency.add_column("calls", justify="right")
        latency.add_column("median", justify="right")
        latency.add_column("max", justify="right")
        for item in report.latency:
            latency.add_row(item.verb, str(item.calls), f"{item.median_ms:.0f} ms", f"{item.max_ms:.0f} ms")
        out.print(latency)
    counts = {status: sum(1 for result in report.results if result.status == status)
              for status in (sanity.PASS, sanity.FAIL, sanity.SKIP)}
    summary = f"{counts[sanity.PASS]} passed, {counts[sanity.FAIL]} failed, {counts[sanity.SKIP]} skipped"
    out.print(Text(summary, style=SANITY_STYLE[sanity.FAIL] if report.failed else SANITY_STYLE[sanity.PASS]))
    if report.kept:
        out.print(Text(f"kept the temporary kubelet root {report.root}"))


# ---- flexvol simulate --------------------------------------------------------------------

STATUS_STYLE = {"Success": "green", "Failure": "red", "Not supported": "yellow"}


def show_argv(argv: list[str]) -> str:
    text = shlex.join(argv)
    return text if len(text) <= 2000 else text[:2000] + "..."


def simulate_resolution(out: Console, pod: PodPlan, volume: PodVolume) -> None:
    head = Text(f"{pod.pod} volume {volume.name}: ", style="bold")
    if volume.binding is not None:
        binding = volume.binding
        if binding.pv is not None:
            head.append(f"claim {binding.claim} binds to PV {volume.pv} ({binding.how})")
        else:
            head.append(f"claim {binding.claim} cannot bind", style="bold red")
    elif volume.driver:
        head.append("inline flexVolume")
    else:
        out.print(head + Text("not a flexVolume; the driver is not involved", style="dim"))
        return
    out.print(head)
    if volume.binding is not None:
        for pv, reason in volume.binding.rejected:
            out.print(Text(f"  PV {pv}: {reason}", style="red" if volume.binding.pv is None else "dim"))
    if volume.driver:
        out.print(Text(f"  driver {volume.driver}, pvOrVolumeName {volume.pv_or_volume_name}, "
                       f"{'ro' if volume.read_only else 'rw'}, fsType {volume.fs_type or '(default)'}"))
    if volume.problem:
        out.print(Text(f"  not run: {volume.problem}", style="yellow"))


class SimulateTimeline:
    """Prints each step of one pod as it happens, with the kubelet root shortened to $ROOT."""

    def __init__(self, out: Console, several: bool) -> None:
        self.out = out
        self.root = ""
        self.several = several

    def step(self, outcome: Outcome | None, step: Step) -> None:
        at = f"+{step.at:.3f}s"
        if outcome is not None and not self.root:
            self.root = outcome.kubelet_root
            self.out.print(Text(f"  kubelet root {self.root} (shown as $ROOT below)", style="dim"))
        if step.component == "pod":
            head = Text(f"  {at:>9}  {'pod':<18} {step.verb:<14}", style="bold")
            self.out.print(head + Text(step.note, style="dim"))
            return
        line = Text(f"  {at:>9}  {step.component:<18} {step.verb:<14}")
        line.append(step.status, style=STATUS_STYLE.get(step.status, "red"))
        line.append(f"  {step.seconds * 1000:.0f} ms", style="dim")
        if self.several:
            line.append(f"  [{step.volume}]", style="cyan")
        reply = {key: value for key, value in (step.reply or {}).items() if key != "status"}
        if reply:
            line.append("  " + json.dumps(reply)[:200], style="dim")
        self.out.print(line)
        argv = show_argv(step.argv)
        if self.root:
            argv = argv.replace(self.root, "$ROOT")
        self.out.print(Text(f"             $ {argv}", style="dim"))
        if step.problem:
            self.out.print(Text(f"             {step.problem}", style="red"))


def simulate_summary(out: Console, run: PodRun) -> None:
    for outcome in run.outcomes:
        if outcome.error:
            out.print(Text(f"  {outcome.volume}: failed: {outcome.error}", style="bold red"))
        elif outcome.mounted_at:
            out.print(Text(f"  {outcome.volume}: mounted at {outcome.mounted_at} "
                           "(left mounted: --no-teardown)", style="bold green"))
    if run.left_behind:
        out.print(Text(f"  left behind (removed): {run.left_behind}", style="bold red"))
    if run.kept:
        out.print(Text(f"  left behind in the data root (not removed): {run.kept}", style="bold red"))
    if run.error:
        out.print(Text(f"  {run.error}", style="bold red"))
    unfinished = any(outcome.error or outcome.mounted_at for outcome in run.outcomes)
    if not (run.left_behind or run.kept or run.error or unfinished):
        out.print(Text("  pod volumes set up and torn down; nothing left behind", style="bold green"))


# ---- flexvol top -------------------------------------------------------------------------

def per_second(value: float) -> str:
    return f"{size(int(value))}/s" if value >= 1 else "0"


def top_table(rows: list[VolumeRates], interval: float) -> Table:
    """Live I/O per volume over one interval, busiest first."""
    table = Table(box=None, pad_edge=False, caption=f"over {interval:g}s", caption_justify="left")
    for name in ("VOLUME", "PV/CLAIM", "LOOP", "R/S", "W/S", "READ", "WRITE", "R LAT", "W LAT",
                 "INFLIGHT", "BUSY", "QUEUE"):
        left = name in ("VOLUME", "PV/CLAIM", "LOOP")
        table.add_column(name, no_wrap=True, justify="left" if left else "right")
    for row in rows:
        rate, io = row.rates, row.io
        who = f"{io.pv or '?'} ({io.claim})" if io.claim else (io.pv or "-")
        table.add_row(io.volume_id, who, ", ".join(io.devices),
                      f"{rate.read_iops:.0f}", f"{rate.write_iops:.0f}",
                      per_second(rate.read_bytes_per_s), per_second(rate.write_bytes_per_s),
                      f"{rate.read_latency_ms:.1f}ms", f"{rate.write_latency_ms:.1f}ms", str(rate.in_flight),
                      f"{rate.busy:.0%}", f"{rate.queue_depth:.2f}")
    return table


def top_rows_as_dicts(rows: list[VolumeRates], interval: float) -> list[dict]:
    return [{"volume_id": row.io.volume_id, "pv": row.io.pv, "claim": row.io.claim,
             "loop_devices": row.io.devices,
             "interval_seconds": interval, "read_iops": round(row.rates.read_iops, 2),
             "write_iops": round(row.rates.write_iops, 2),
             "read_bytes_per_second": round(row.rates.read_bytes_per_s),
             "write_bytes_per_second": round(row.rates.write_bytes_per_s),
             "read_latency_ms": round(row.rates.read_latency_ms, 3),
             "write_latency_ms": round(row.rates.write_latency_ms, 3),
             "in_flight": row.rates.in_flight, "busy": round(row.rates.busy, 4),
             "queue_depth": round(row.rates.queue_depth, 3)} for row in rows]
