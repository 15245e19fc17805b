"""`flexvol simulate -f FILE...`: walk manifests through this node's storage flow."""

from __future__ import annotations

import json
import os
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
from flexvol.simulate.flow import Outcome, Settings, Step, run_volume
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
    out.print(head)
    if volume.binding is not None:
        for pv, reason in volume.binding.rejected:
            out.print(Text(f"  PV {pv}: {reason}", style="red" if volume.binding.pv is None else "dim"))
    if volume.driver:
        out.print(f"  driver {volume.driver}, pvOrVolumeName {volume.pv_or_volume_name}, "
                  f"{'ro' if volume.read_only else 'rw'}, fsType {volume.fs_type or '(default)'}")
    if volume.problem:
        out.print(Text(f"  not run: {volume.problem}", style="yellow"))


def _step_line(out: Console, outcome: Outcome, step: Step) -> None:
    at = f"+{step.at:.3f}s"
    if not outcome.steps[:-1] and step.component != "pod":
        out.print(Text(f"  kubelet root {outcome.kubelet_root} (shown as $ROOT below)", style="dim"))

    def short(text: str) -> str:
        return text.replace(outcome.kubelet_root, "$ROOT") if outcome.kubelet_root else text

    if step.component == "pod":
        head = Text(f"  {at:>9}  {'pod':<18} {step.verb:<14}", style="bold")
        out.print(head + Text(short(step.note), style="dim"))
        return
    line = Text(f"  {at:>9}  {step.component:<18} {step.verb:<14}")
    line.append(step.status, style=STATUS_STYLE.get(step.status, "red"))
    line.append(f"  {step.seconds * 1000:.0f} ms", style="dim")
    reply = {key: value for key, value in (step.reply or {}).items() if key != "status"}
    if reply:
        line.append("  " + json.dumps(reply)[:200], style="dim")
    out.print(line)
    out.print(Text(f"             $ {short(_show_argv(step.argv))}", style="dim"))
    if step.problem:
        out.print(Text(f"             {step.problem}", style="red"))


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
            for volume in pod.volumes:
                entry: dict = {"pod": pod.pod, "volume": asdict(volume)}
                report.append(entry)
                if not json_output:
                    _resolution(out, pod, volume)
                if not volume.runnable:
                    failed = failed or volume.driver != "" or volume.binding is not None
                    continue
                if dry_run:
                    steps = dry_steps(pod, volume, os.path.join("<kubelet root>"))
                    entry["plan"] = [{"component": c, "when": w, "argv": a} for c, w, a in steps]
                    if not json_output:
                        for component, when, argv in steps:
                            out.print(Text(f"  {component:<18} {when:<24} ", style="bold")
                                      + Text(_show_argv(argv), style="dim"))
                    continue
                outcome = run_volume(pod, volume, settings,
                                     None if json_output else lambda o, s: _step_line(out, o, s))
                entry["outcome"] = asdict(outcome)
                failed = failed or bool(outcome.error or outcome.left_behind)
                if json_output:
                    continue
                if outcome.error:
                    out.print(Text(f"  failed: {outcome.error}", style="bold red"))
                elif outcome.mounted_at:
                    out.print(Text(f"  mounted at {outcome.mounted_at} (left mounted: --no-teardown)",
                                   style="bold green"))
                else:
                    out.print(Text("  pod volume set up and torn down; nothing left behind",
                                   style="bold green"))
                if outcome.left_behind:
                    out.print(Text(f"  left behind (removed): {outcome.left_behind}", style="bold red"))
    except FlexvolError as error:
        out.print(f"[bold red]error:[/] {error}")
        raise typer.Exit(2) from None
    if json_output:
        typer.echo(json.dumps(report, indent=2))
    raise typer.Exit(1 if failed else 0)
