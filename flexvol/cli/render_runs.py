"""Rich output of the toolkit's driver runs: the conformance checker (`flexvol sanity`) and the
kubelet simulator (`flexvol simulate`). The listings are render.py."""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import asdict

from rich.console import Console
from rich.text import Text

from flexvol.cli.output import Column, Output, emit
from flexvol.sanity import engine as sanity
from flexvol.simulate.flow import Outcome, PodRun, Step
from flexvol.simulate.plan import PodPlan, PodVolume

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


SANITY_COLUMNS = (
    Column("CHECK", "name"),
    Column("§", "section", justify="right"),
    Column("RESULT", "status", style=lambda row: SANITY_STYLE.get(str(row["status"]), "")),
    Column("TIME", lambda row: f"{row['seconds']:.1f}s" if row["status"] != sanity.SKIP else "",
           justify="right"),
    Column("CALLS", "calls", justify="right", wide=True),
    Column("REASON", lambda row: str(row["reason"] or row["title"]), fold=True),
)
LATENCY_COLUMNS = (
    Column("VERB", "verb"),
    Column("CALLS", "calls", justify="right"),
    Column("MEDIAN", lambda row: f"{row['median_ms']:.0f} ms", justify="right"),
    Column("MAX", lambda row: f"{row['max_ms']:.0f} ms", justify="right"),
)


def sanity_report(report: sanity.Report, out: Console, output: Output | None = None,
                  no_headers: bool = False) -> None:
    if output in (Output.JSON, Output.YAML, Output.NAME):
        body = report.as_dict()
        emit(body["results"], SANITY_COLUMNS, output, no_headers, name="name", data=body, out=out)
        return
    mode = "attachable (controller-manager attaches)" if report.attach else "non-attachable (kubelet only)"
    out.print(Text.assemble((report.driver, "bold"), " as driver ", (report.driver_name, "bold"),
                            f", {mode}"))
    emit([asdict(result) for result in report.results], SANITY_COLUMNS, output, no_headers, out=out)
    for result in report.results:
        if result.status == sanity.FAIL and result.argv:
            out.print(Text(f"{result.name}: failing call", style="bold red"))
            out.print(Text("  $ " + shlex.join(result.argv)))
            for line in (result.output or "(no output)").splitlines()[:12]:
                out.print(Text("  " + line, style="dim"))
    if report.latency:
        out.print(Text("call latency"))
        emit([asdict(item) for item in report.latency], LATENCY_COLUMNS, output, no_headers, out=out)
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
