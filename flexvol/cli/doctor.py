"""doctor: is this node ready for the driver?"""

from __future__ import annotations

from typing import Annotated

import typer

from flexvol import doctor as doctor_module
from flexvol.cli import render
from flexvol.cli.common import (
    DEFAULT_KUBELET,
    DEFAULT_ROOT,
    EXIT_DOCTOR_FAIL,
    JsonOption,
    KubeletRootOption,
    RootOption,
    console,
    friendly_errors,
    load_config,
    print_json,
)
from flexvol.cli.main import app
from flexvol.config import TOOL_PATH


@app.command()
@friendly_errors
def doctor(json_output: JsonOption = False, root: RootOption = DEFAULT_ROOT,
           kubelet_root: KubeletRootOption = DEFAULT_KUBELET,
           plugin_dir: Annotated[str, typer.Option(
               help="The kubelet's volume plugin dir; found from the running kubelet when not given.")] = "",
           tool_path: Annotated[str, typer.Option(
               help="Where the driver looks for its tools.")] = TOOL_PATH) -> None:
    """Check that this node is ready: tools, kernel, plugin dir, driver init, propagation, space.

    PASS / WARN / FAIL per check with its fix; exit code 4 on any FAIL.

    Example: [bold]flexvol doctor[/]
    """
    checks = doctor_module.run_checks(load_config(root), plugin_dir=plugin_dir or None,
                                      kubelet_root=kubelet_root, tool_path=tool_path)
    if json_output:
        print_json([check.as_dict() for check in checks])
    else:
        console().print(render.checks_table(checks))
    if any(check.status == doctor_module.FAIL for check in checks):
        raise typer.Exit(EXIT_DOCTOR_FAIL)
