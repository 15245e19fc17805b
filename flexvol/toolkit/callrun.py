"""Run an installed driver the way the kubelet does: argv, a minimal environment, stdout and
stderr read as one stream that must hold exactly one JSON object (docs/flexvolume.md section 2).

Toolkit only (`flexvol call`, `flexvol doctor`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from flexvol.core.config import DRIVER_NAME

KUBELET_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_PLUGIN_DIR = "/usr/libexec/kubernetes/kubelet-plugins/volume/exec"


@dataclass
class DriverResult:
    argv: list[str]
    code: int
    output: str
    reply: dict = field(default_factory=dict)
    # why the output is not a usable reply, "" when it is
    problem: str = ""


def installed_driver(plugin_dir: str = DEFAULT_PLUGIN_DIR) -> str:
    vendor, name = DRIVER_NAME.split("/")
    return os.path.join(plugin_dir, f"{vendor}~{name}", name)


def call_driver(driver: str, args: list[str], *, timeout: float = 120,
                env: dict[str, str] | None = None) -> DriverResult:
    """One call, exec'd and judged by the same code as `flexvol sanity` (flexvol.sanity.caller)."""
    from flexvol.sanity.caller import exec_driver, judge

    argv = [driver, *args]
    code, output, timed_out = exec_driver(argv, {"PATH": KUBELET_PATH, **(env or {})}, timeout)
    if code is None and not timed_out:
        return DriverResult(argv, -1, "", problem=output)
    reply, problem = judge(args[0] if args else "driver", code, output, timed_out)
    return DriverResult(argv, -1 if code is None else code, output, reply or {}, problem)
