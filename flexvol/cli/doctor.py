"""doctor: is this node ready for the driver?"""

from __future__ import annotations

from typing import Annotated

import typer

from flexvol.cli import render
from flexvol.cli.common import (
    DEFAULT_KUBELET,
    DEFAULT_ROOT,
    EXIT_DOCTOR_FAIL,
    KubeletRootOption,
    RootOption,
    friendly_errors,
    load_config,
)
from flexvol.cli.main import app
from flexvol.cli.output import JsonAliasOption, NoHeadersOption, OutputOption, emit, resolve
from flexvol.core.config import TOOL_PATH
from flexvol.toolkit import doctor as doctor_module


@app.command()
@friendly_errors
def doctor(output: OutputOption = None, no_headers: NoHeadersOption = False,
           json_output: JsonAliasOption = False, root: RootOption = DEFAULT_ROOT,
           kubelet_root: KubeletRootOption = DEFAULT_KUBELET,
           plugin_dir: Annotated[str, typer.Option(
               help="The kubelet's volume plugin dir; found from the running kubelet when not given.")] = "",
           tool_path: Annotated[str, typer.Option(
               help="Where the driver looks for its tools.")] = TOOL_PATH) -> None:
    """Check that this node is ready: tools, kernel, plugin dir, driver init, propagation, space.

    PASS / WARN / FAIL per check with its fix; exit code 4 on any FAIL. -o name prints the
    name of each check.

    Example: [bold]flexvol doctor[/]
    """
    output = resolve(output, json_output)
    checks = doctor_module.run_checks(load_config(root), plugin_dir=plugin_dir or None,
                                      kubelet_root=kubelet_root, tool_path=tool_path)
    emit([check.as_dict() for check in checks], render.CHECK_COLUMNS, output, no_headers, name="name")
    if any(check.status == doctor_module.FAIL for check in checks):
        raise typer.Exit(EXIT_DOCTOR_FAIL)
