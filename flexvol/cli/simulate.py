"""`flexvol simulate -f FILE...`: walk manifests through this node's storage flow."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict
from typing import Annotated

import typer
from rich.text import Text

from flexvol.cli import common, render_runs
from flexvol.cli.main import app
from flexvol.cli.sanity import parse_env
from flexvol.core.errors import FlexvolError, InvalidInput
from flexvol.sanity.node import Node
from flexvol.simulate import manifests as manifests_module
from flexvol.simulate.flow import Settings, run_pod
from flexvol.simulate.plan import PodPlan, dry_steps, plan
from flexvol.toolkit.callrun import DEFAULT_PLUGIN_DIR


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
    root: Annotated[str, typer.Option(
        "--root", envvar="FLEXVOL_ROOT", show_envvar=True,
        help="The data root the driver is given (its FLEXVOL_ROOT). Default: a scratch data root "
             "made for this run and removed after it, so no real volume is ever touched.")] = "",
    json_output: Annotated[bool, typer.Option("--json", help="Print the plan and steps as JSON.")] = False,
) -> None:
    """Walk Pods, PVs, PVCs and StorageClasses through this node's FlexVolume flow.

    Runs in a scratch data root unless given --root (or FLEXVOL_ROOT) and says which it used.
    Exit code 2 when the manifests hold no volume a FlexVolume driver serves.

    Example: [bold]flexvol simulate -f examples/inline-pod.yaml[/]
    """
    out = common.console()
    extra_env = parse_env(list(env or []))
    # --env FLEXVOL_ROOT=... is the most explicit way to name it.
    given = extra_env.get("FLEXVOL_ROOT") or root
    failed = False
    report: list[dict] = []
    node: Node | None = None
    try:
        found = manifests_module.load(files)
        plans = plan(found, node_name or socket.gethostname())
        if not plans:
            raise FlexvolError("no Pod in the manifests", "add a Pod that uses the volumes")
        if not any(volume.driver or volume.binding is not None for pod in plans for volume in pod.volumes):
            raise InvalidInput(_no_flexvolume(plans, found.ignored),
                               "simulate walks FlexVolume volumes: a flexVolume in a Pod's volumes, or a "
                               "claim bound to a PersistentVolume with spec.flexVolume")
        if not dry_run and any(volume.runnable for pod in plans for volume in pod.volumes):
            node = Node.create("simulate", tmp_dir, "simulate")
        data_root = os.path.abspath(given) if given else node.data_root if node else ""
        if data_root:
            extra_env["FLEXVOL_ROOT"] = data_root
        settings = Settings(driver, plugin_dir, extra_env, timeout, teardown, tmp_dir, data_root)
        if node is not None and not json_output:
            how = ("given with --root or FLEXVOL_ROOT; volumes made there stay" if given else
                   "scratch, made for this run and removed at the end" if teardown else
                   "scratch, kept with --no-teardown")
            out.print(Text(f"data root {data_root} ({how})", style="bold"))
        for pod in plans:
            entries = {}
            for volume in pod.volumes:
                entries[volume.name] = entry = {"pod": pod.pod, "volume": asdict(volume)}
                if data_root:
                    entry["data_root"] = data_root
                report.append(entry)
                if not json_output:
                    render_runs.simulate_resolution(out, pod, volume)
                if not volume.runnable:
                    failed = failed or volume.driver != "" or volume.binding is not None
                elif dry_run:
                    steps = dry_steps(pod, volume, "<kubelet root>")
                    entry["plan"] = [{"component": c, "when": w, "argv": a} for c, w, a in steps]
                    if not json_output:
                        for component, when, argv in steps:
                            out.print(Text(f"  {component:<18} {when:<24} ", style="bold")
                                      + Text(render_runs.show_argv(argv), style="dim"))
            runnable = [volume for volume in pod.volumes if volume.runnable]
            if dry_run or not runnable:
                continue
            timeline = render_runs.SimulateTimeline(out, len(runnable) > 1)
            if not json_output:
                out.print(Text(f"{pod.pod}: setting up {len(runnable)} volume(s)", style="bold"))
            run = run_pod(pod, runnable, settings, None if json_output else timeline.step, node)
            for outcome in run.outcomes:
                entries[outcome.volume]["outcome"] = asdict(outcome)
            failed = failed or bool(run.error or run.left_behind or run.kept) or \
                any(o.error for o in run.outcomes)
            if not json_output:
                render_runs.simulate_summary(out, run)
    except FlexvolError as error:
        common.print_error(error)
        # A driver or manifest that cannot be used is wrong usage; anything else failed.
        raise typer.Exit(2 if isinstance(error, InvalidInput) else common.EXIT_FAILED) from None
    finally:
        if node is not None and teardown:
            failed = not _remove_node(node) or failed
    if json_output:
        typer.echo(json.dumps(report, indent=2))
    raise typer.Exit(1 if failed else 0)


def _no_flexvolume(plans: list[PodPlan], ignored: list[str]) -> str:
    volumes = [f"{pod.pod}/{volume.name}" for pod in plans for volume in pod.volumes]
    text = (f"no volume in the manifests is served by a FlexVolume driver ({len(plans)} pod(s); "
            + (f"volumes {', '.join(volumes[:5])}{' ...' if len(volumes) > 5 else ''}" if volumes
               else "no volumes") + "): nothing to simulate")
    if ignored:
        text += f"; ignored: {', '.join(ignored[:3])}{' ...' if len(ignored) > 3 else ''}"
    return text


def _remove_node(node: Node) -> bool:
    """Remove the run's temporary node (kubelet root and scratch data root) once the kernel holds
    nothing of it; False, said on stderr, when something stays."""
    left = node.leftovers().describe()
    errors = node.remove()
    if left or errors or os.path.exists(node.root):
        said = "; ".join(part for part in (left and f"the kernel still held {left}", *errors) if part)
        common.print_error(FlexvolError(f"the temporary node {node.root} was not left clean: "
                                        f"{said or 'it could not be removed'}",
                                        "see `losetup -l` and `findmnt`; remove what stays by hand"))
        return False
    return True
