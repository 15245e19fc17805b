"""repair: find what does not add up on this node and, with --apply, fix it."""

from __future__ import annotations

from typing import Annotated

import typer

from flexvol.cli import render
from flexvol.cli.audit import journaled
from flexvol.cli.common import (
    DEFAULT_KUBELET,
    DEFAULT_ROOT,
    EXIT_FINDINGS,
    KubeletRootOption,
    RootOption,
    error_console,
    friendly_errors,
    load_config,
)
from flexvol.cli.main import app
from flexvol.cli.output import JsonAliasOption, NoHeadersOption, Output, OutputOption, emit, resolve
from flexvol.core.errors import FlexvolError
from flexvol.toolkit import repair as repair_module
from flexvol.toolkit import repair_apply


@app.command()
@friendly_errors
def repair(apply: Annotated[bool, typer.Option("--apply", help="Carry out the actions listed.")] = False,
           output: OutputOption = None, no_headers: NoHeadersOption = False,
           json_output: JsonAliasOption = False, root: RootOption = DEFAULT_ROOT,
           kubelet_root: KubeletRootOption = DEFAULT_KUBELET) -> None:
    """Reconcile records, loop devices, mounts, backing files and the kubelet's pod dirs.

    Lists every finding with the action it would take; acts only with --apply, under the
    volume's lock, after checking that the finding still holds, and reports only what the
    kernel confirms. Never deletes a backing file nor writes over one; never makes or mounts
    again a pod dir the kubelet let go of. Exit code 3 when something is left that needs a
    person, failed, or is still pending (or without --apply). -o name prints the subject (loop
    device, mount point, record or file) of each finding.

    Example: [bold]flexvol repair[/], then [bold]flexvol repair --apply[/]
    """
    output = resolve(output, json_output)
    config = load_config(root, must_exist=True)
    found = repair_module.findings(config, kubelet_root)
    results: dict[int, str] = {}
    unresolved = 0
    if apply:
        for index, item in enumerate(found):
            if not item.action:
                unresolved += 1
                continue
            try:
                with journaled(config, "repair", item.volume_id, (item.kind, item.subject)) as action:
                    done = repair_apply.apply(config, item)
                    action.message = f"{item.kind} {item.subject}: {done}"
                results[index] = "done: " + done
            except repair_module.Pending as error:
                # taken, but the kernel has not finished it: not done, and not a failure either
                results[index] = str(error)
                unresolved += 1
            except FlexvolError as error:
                results[index] = f"failed: {error}"
                unresolved += 1
    else:
        unresolved = len(found)
    emit(render.finding_rows(found, results), render.finding_columns(apply), output, no_headers,
         name="subject", empty="nothing to repair")
    if found and not apply and output in (None, Output.WIDE):
        # on stderr: a script reading the table gets the table only
        error_console().print("run [bold]flexvol repair --apply[/] to carry out the actions")
    if unresolved:
        raise typer.Exit(EXIT_FINDINGS)
