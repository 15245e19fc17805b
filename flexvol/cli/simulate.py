"""`flexvol simulate -f FILE...`: walk manifests through this node's storage flow."""

from __future__ import annotations

import json
import socket
from dataclasses import asdict
from typing import Annotated

import typer
from rich.text import Text

from flexvol.callrun import DEFAULT_PLUGIN_DIR
from flexvol.cli import common, render
from flexvol.cli.main import app
from flexvol.cli.sanity import parse_env
from flexvol.errors import FlexvolError, InvalidInput
from flexvol.simulate import manifests as manifests_module
from flexvol.simulate.flow import Settings, run_pod
from flexvol.simulate.plan import dry_steps, plan


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
    out = common.console()
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
                    render.simulate_resolution(out, pod, volume)
                if not volume.runnable:
                    failed = failed or volume.driver != "" or volume.binding is not None
                elif dry_run:
                    steps = dry_steps(pod, volume, "<kubelet root>")
                    entry["plan"] = [{"component": c, "when": w, "argv": a} for c, w, a in steps]
                    if not json_output:
                        for component, when, argv in steps:
                            out.print(Text(f"  {component:<18} {when:<24} ", style="bold")
                                      + Text(render.show_argv(argv), style="dim"))
            runnable = [volume for volume in pod.volumes if volume.runnable]
            if dry_run or not runnable:
                continue
            timeline = render.SimulateTimeline(out, len(runnable) > 1)
            if not json_output:
                out.print(Text(f"{pod.pod}: setting up {len(runnable)} volume(s)", style="bold"))
            run = run_pod(pod, runnable, settings, None if json_output else timeline.step)
            for outcome in run.outcomes:
                entries[outcome.volume]["outcome"] = asdict(outcome)
            failed = failed or bool(run.error or run.left_behind) or any(o.error for o in run.outcomes)
            if not json_output:
                render.simulate_summary(out, run)
    except FlexvolError as error:
        common.print_error(error)
        # A driver or manifest that cannot be used is wrong usage; anything else failed.
        raise typer.Exit(2 if isinstance(error, InvalidInput) else common.EXIT_FAILED) from None
    if json_output:
        typer.echo(json.dumps(report, indent=2))
    raise typer.Exit(1 if failed else 0)
