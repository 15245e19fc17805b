"""Run the node's part of the storage flow for one pod against a real driver.

The kubelet and controller-manager behaviour (skips, bind-mount fallbacks, directory handling)
is the checker's (flexvol.sanity.kubelet); this module adds the order of a pod's life and a
timeline of steps.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from flexvol.errors import InvalidInput
from flexvol.sanity.caller import Call, Caller
from flexvol.sanity.kubelet import CheckFailed, Kubelet, Volume
from flexvol.sanity.node import Node
from flexvol.simulate.plan import PodPlan, PodVolume, driver_path, mount_options

CONTROLLER_VERBS = ("attach", "isattached", "detach", "expandvolume")


@dataclass
class Step:
    at: float
    component: str
    verb: str
    argv: list[str]
    status: str
    seconds: float
    reply: dict | None = None
    problem: str = ""
    note: str = ""


@dataclass
class Outcome:
    pod: str
    volume: str
    driver: str = ""
    attachable: bool = False
    steps: list[Step] = field(default_factory=list)
    error: str = ""
    mounted_at: str = ""
    left_behind: str = ""
    kubelet_root: str = ""


@dataclass
class Settings:
    driver: str | None = None
    plugin_dir: str = "/usr/libexec/kubernetes/kubelet-plugins/volume/exec"
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = 120.0
    teardown: bool = True
    tmp_dir: str | None = None


def executable_for(volume: PodVolume, settings: Settings) -> str:
    path = settings.driver or driver_path(volume.driver, settings.plugin_dir)
    if not os.access(path, os.X_OK) or os.path.isdir(path):
        raise InvalidInput(f"no driver executable for {volume.driver} at {path}",
                           "install the driver there, or name it with --driver PATH")
    return os.path.abspath(path)


def run_volume(plan: PodPlan, volume: PodVolume, settings: Settings,
               on_step: Callable[[Outcome, Step], None] | None = None) -> Outcome:
    outcome = Outcome(plan.pod, volume.name, volume.driver)
    executable = executable_for(volume, settings)
    node = Node.create(volume.driver, settings.tmp_dir, "simulate")
    outcome.kubelet_root = node.kubelet_root
    started = time.monotonic()

    def record(call: Call) -> None:
        component = "controller-manager" if call.verb in CONTROLLER_VERBS else "kubelet"
        step = Step(round(time.monotonic() - started - call.seconds, 3), component, call.verb, call.argv[1:],
                    call.status or "(no reply)", round(call.seconds, 3), call.reply, call.problem)
        outcome.steps.append(step)
        if on_step:
            on_step(outcome, step)

    caller = Caller(executable, env=settings.env, timeout=settings.timeout, on_done=record)
    try:
        init = caller.call("init")
        if not init.ok:
            outcome.error = f"init failed, the kubelet would not load {volume.driver}: {init.describe()}"
            return outcome
        capabilities = init.field("capabilities") or {}
        outcome.attachable = bool(next((value for key, value in capabilities.items()  # type: ignore[union-attr]
                                        if key.lower() == "attach"), True))
        kubelet = Kubelet(caller, node, outcome.attachable, plan.node_name)
        spec = Volume(pv=volume.pv_or_volume_name, options=volume.options, fs_type=volume.fs_type,
                      read_only=volume.read_only)
        extra = {key: value for key, value in mount_options(volume, plan.uid).items()
                 if key not in volume.options}
        try:
            outcome.mounted_at = kubelet.setup(spec, plan.uid, extra)
            if on_step:
                # Not a driver call: the moment the pod's containers would start.
                on_step(outcome, Step(round(time.monotonic() - started, 3), "pod", "running", [], "", 0.0,
                                      note=f"volume mounted at {outcome.mounted_at}"))
        except CheckFailed as failed:
            outcome.error = failed.message
        if settings.teardown:
            try:
                kubelet.teardown(spec)
                outcome.mounted_at = ""
            except CheckFailed as failed:
                outcome.error = outcome.error or failed.message
    finally:
        if settings.teardown:
            leftovers = node.leftovers()
            outcome.left_behind = leftovers.describe()
            errors = node.remove()
            if errors:
                outcome.error = outcome.error or f"cleanup failed: {'; '.join(errors)}"
    return outcome
