"""Run an installed driver the way the kubelet does: argv, a minimal environment, stdout and
stderr read as one stream that must hold exactly one JSON object (FLEXVOLUME.md 2).

Toolkit only (`flexvol call`, `flexvol doctor`).
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field

from flexvol.config import DRIVER_NAME

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
    argv = [driver, *args]
    environment = {"PATH": KUBELET_PATH}
    if env:
        environment.update(env)
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, env=environment, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return DriverResult(argv, -1, "", problem=f"no answer within {timeout:g}s")
    except OSError as error:
        return DriverResult(argv, -1, "", problem=f"cannot run {driver}: {error.strerror}")
    output = done.stdout.decode("utf-8", "replace")
    try:
        reply = json.loads(output)
    except ValueError:
        return DriverResult(argv, done.returncode, output,
                            problem="the output is not one JSON object (the kubelet would fail the call)")
    if not isinstance(reply, dict) or "status" not in reply:
        return DriverResult(argv, done.returncode, output, problem="the reply has no status")
    return DriverResult(argv, done.returncode, output, reply)
