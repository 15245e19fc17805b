"""`flexvol simulate -f FILE...`: walk manifests through this node's storage flow."""

from __future__ import annotations

import json
import shlex
import socket
from dataclasses import asdict
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from flexvol.cli import render
from flexvol.cli.main import app
from flexvol.cli.sanity import parse_env
from flexvol.errors import FlexvolError
from flexvol.simulate import manifests as manifests_module
from flexvol.simulate.flow import Outcome, PodRun, Settings, Step, run_pod
from flexvol.simulate.plan import DEFAULT_PLUGIN_DIR, PodPlan, PodVolume, dry_steps, plan

STATUS_STYLE = {"Success": "green", "Failure": "red", "Not supported": "yellow"}


def _show_argv(argv: list[str]) -> str:
    text = shlex.join(argv)
    return text if len(text) <= 2000 else text[:2000] + "..."


def _resolution(out: Console, pod: PodPlan, volume: PodVolume) -> None:
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
        out.print(f"  driver {volume.driver}, pvOrVolumeName {volume.pv_or_volume_name}, "
                  f"{'ro' if volume.read_only else 'rw'}, fsType {volume.fs_type or '(default)'}")
    if volume.problem:
        out.print(Text(f"  not run: {volume.problem}", style="yellow"))


class Timeline:
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
        argv = _show_argv(step.argv)
        if self.root:
            argv = argv.replace(self.root, "$ROOT")
        self.out.print(Text(f"             $ {argv}", style="dim"))
        if step.problem:
            self.out.print(Text(f"             {step.problem}", style="red"))


def _summary(out: Console, run: PodRun) -> None:
    for outcome in run.outcomes:
        if outcome.error:
            out.print(Text(f"  {outcome.volume}: failed: {outcome.error}", style="bold red"))
        elif outcome.mounted_at:
            out.print(Text(f"  {outcome.volume}: mounted at {outcome.mounted_at} "
                           "(left mounted: --no-teardown)", style="bold green"))
    if run.left_behind:
        out.print(Text(f"  left behind (removed): {run.left_behind}", style="bold red"))
    if run.error:
        out.print(Text(f"  {run.error}", style="bold red"))
    unfinished = any(outcome.error or outcome.mounted_at for outcome in run.outcomes)
    if not (run.left_behind or run.error or unfinished):
        out.print(Text("  pod volumes set up and torn down; nothing left behind", style="bold green"))


@app.command()
def simulate(
    files: Annotated[list[str], typer.Option("-f", "--file", help="A manifest file (YAML, many documents).")],
    driver: Annotated[str | None, typer.Option(help="The driver executable (default: from the plugin dir).")]
    = None,
    plugin_dir: Annotated[str, typer.Option(help="Where drivers are installed.")] = DEFAULT_PLUGIN_DIR,
    teardown: Annotated[bool, typer.Option(help="Unmount, unmountdevice and detach at the end.")] = True,
    dry_run: Annotated[bool, typer.Option(help="Resolve and print the plan without calling the driver.")]
    = False,
    node_name: Annotated[str, typer.Option(help="This node's name, for attach calls.")] = "",
    env: Annotated[list[str] | None, typer.Option(help="KEY=VALUE added to the driver's environment.")]
    = None,
    timeout: Annotated[float, typer.Option(help="Seconds each driver call may take.")] = 120.0,
    tmp_dir: Annotated[str | None, typer.Option(help="Where to create the temporary kubelet root.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the plan and steps as JSON.")] = False,
) -> None:
    """Walk Pods, PVs, PVCs and StorageClasses through this node's FlexVolume flow."""
    out = render.console()
    settings = Settings(driver, plugin_dir, parse_env(list(env or [])), timeout, teardown, tmp_dir)
    failed = False
    report: list[dict] = []
    try:
        found = manifests_module.load(files)
        plans = plan(found, node_name or socket.gethostname())
        if not plans:
            raise FlexvolError("no Pod in the manifests", "add a Pod that uses the volumes")
        for pod in plans:
            entries = {}
            for volume in pod.volumes:
                entries[volume.name] = entry = {"pod": pod.pod, "volume": asdict(volume)}
                report.append(entry)
                if not json_output:
                    _resolution(out, pod, volume)
                if not volume.runnable:
                    failed = failed or volume.driver != "" or volume.binding is not None
                elif dry_run:
                    steps = dry_steps(pod, volume, "<kubelet root>")
                    entry["plan"] = [{"component": c, "when": w, "argv": a} for c, w, a in steps]
                    if not json_output:
                        for component, when, argv in steps:
                            out.print(Text(f"  {component:<18} {when:<24} ", style="bold")
                                      + Text(_show_argv(argv), style="dim"))
            runnable = [volume for volume in pod.volumes if volume.runnable]
            if dry_run or not runnable:
                continue
            timeline = Timeline(out, len(runnable) > 1)
            if not json_output:
                out.print(Text(f"{pod.pod}: setting up {len(runnable)} volume(s)", style="bold"))
            run = run_pod(pod, runnable, settings, None if json_output else timeline.step)
            for outcome in run.outcomes:
                entries[outcome.volume]["outcome"] = asdict(outcome)
            failed = failed or bool(run.error or run.left_behind) or any(o.error for o in run.outcomes)
            if not json_output:
                _summary(out, run)
    except FlexvolError as error:
        out.print(f"[bold red]error:[/] {error}")
        raise typer.Exit(2) from None
    if json_output:
        typer.echo(json.dumps(report, indent=2))
    raise typer.Exit(1 if failed else 0)
