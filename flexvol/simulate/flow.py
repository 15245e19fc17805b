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

from flexvol.core import kernel
from flexvol.core.errors import InvalidInput
from flexvol.sanity.caller import Call, Caller
from flexvol.sanity.kubelet import CheckFailed, Kubelet, Volume
from flexvol.sanity.node import Leftovers, Node
from flexvol.simulate.plan import PodPlan, PodVolume, driver_path, mount_options
from flexvol.toolkit.callrun import DEFAULT_PLUGIN_DIR

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
    volume: str = ""


@dataclass
class Outcome:
    pod: str
    volume: str
    driver: str = ""
    attachable: bool = False
    steps: list[Step] = field(default_factory=list)
    error: str = ""
    mounted_at: str = ""
    kubelet_root: str = ""


@dataclass
class Settings:
    driver: str | None = None
    plugin_dir: str = DEFAULT_PLUGIN_DIR
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = 120.0
    teardown: bool = True
    tmp_dir: str | None = None
    # The data root the driver is given (FLEXVOL_ROOT); "" leaves the driver its own.
    data_root: str = ""


def executable_for(volume: PodVolume, settings: Settings) -> str:
    path = settings.driver or driver_path(volume.driver, settings.plugin_dir)
    if not os.access(path, os.X_OK) or os.path.isdir(path):
        raise InvalidInput(f"no driver executable for {volume.driver} at {path}",
                           "install the driver there, or name it with --driver PATH")
    return os.path.abspath(path)


@dataclass
class PodRun:
    pod: str
    kubelet_root: str
    outcomes: list[Outcome] = field(default_factory=list)
    left_behind: str = ""
    # What the kernel still holds under a data root that is not simulate's own: reported, never
    # unmounted nor detached by simulate.
    kept: str = ""
    error: str = ""


StepHook = Callable[[Outcome | None, Step], None]


def held(data_root: str) -> Leftovers:
    """The loop devices whose backing file lies under `data_root` and the mounts under it: what
    the kernel holds of that data root now."""
    roots = {data_root.rstrip("/"), os.path.realpath(data_root).rstrip("/")}

    def under(path: str) -> bool:
        return any(path == root or path.startswith(root + "/") for root in roots)

    return Leftovers({device: backing for device, backing in kernel.loop_devices().items() if under(backing)},
                     [mount.mount_point for mount in kernel.read_mounts() if under(mount.mount_point)])


def run_pod(plan: PodPlan, volumes: list[PodVolume], settings: Settings,
            on_step: StepHook | None = None, node: Node | None = None) -> PodRun:
    """Set up every volume of the pod in order, mark the pod running, then tear down in reverse.

    As the kubelet does, a volume that fails to set up stops the pod from starting; whatever
    was set up is still torn down (with --teardown). `node` is the temporary node the pods of
    one run share (cleaned here, removed by its maker); without it the pod gets its own.
    """
    executables = {volume.driver: executable_for(volume, settings) for volume in volumes}
    if node is None:
        first, own = Node.create(volumes[0].driver, settings.tmp_dir, "simulate"), True
    else:
        first, own = Node(node.root, volumes[0].driver, node.token), False
    # A data root outside the temporary node is the operator's: compare before and after.
    data_root = os.path.abspath(settings.data_root) if settings.data_root else ""
    outside = bool(data_root) and not (data_root + "/").startswith(first.root + "/")
    before = held(settings.data_root) if outside else Leftovers()
    run = PodRun(plan.pod, first.kubelet_root)
    started = time.monotonic()
    current: dict[str, Outcome] = {}

    def record(call: Call) -> None:
        outcome = current["outcome"]
        component = "controller-manager" if call.verb in CONTROLLER_VERBS else "kubelet"
        step = Step(round(time.monotonic() - started - call.seconds, 3), component, call.verb, call.argv[1:],
                    call.status or "(no reply)", round(call.seconds, 3), call.reply, call.problem,
                    volume=outcome.volume)
        outcome.steps.append(step)
        if on_step:
            on_step(outcome, step)

    # One plugin object per driver: init runs once, its "Not supported" memory is shared.
    kubelets: dict[str, Kubelet | str] = {}
    set_up: list[tuple[Outcome, Kubelet, Volume]] = []
    try:
        for volume in volumes:
            outcome = Outcome(plan.pod, volume.name, volume.driver, kubelet_root=first.kubelet_root)
            run.outcomes.append(outcome)
            current["outcome"] = outcome
            if volume.driver not in kubelets:
                kubelets[volume.driver] = _load(volume.driver, executables[volume.driver], first, plan,
                                                settings, record)
            kubelet = kubelets[volume.driver]
            if isinstance(kubelet, str):
                outcome.error = kubelet
                break
            outcome.attachable = kubelet.attach
            spec = Volume(pv=volume.pv_or_volume_name, options=volume.options, fs_type=volume.fs_type,
                          read_only=volume.read_only)
            extra = {key: value for key, value in mount_options(volume, plan.uid).items()
                     if key not in volume.options}
            set_up.append((outcome, kubelet, spec))
            try:
                outcome.mounted_at = kubelet.setup(spec, plan.uid, extra)
            except CheckFailed as failed:
                outcome.error = failed.message
                break
        else:
            if on_step:
                # Not a driver call: the moment the pod's containers would start.
                on_step(None, Step(round(time.monotonic() - started, 3), "pod", "running", [], "", 0.0,
                                   note=f"{len(volumes)} volume(s) mounted"))
        if settings.teardown:
            for outcome, kubelet, spec in reversed(set_up):
                current["outcome"] = outcome
                try:
                    kubelet.teardown(spec)
                    outcome.mounted_at = ""
                except CheckFailed as failed:
                    outcome.error = outcome.error or failed.message
    finally:
        if settings.teardown:
            run.left_behind = first.leftovers().describe()
            if outside:
                after = held(settings.data_root)
                new = Leftovers({device: backing for device, backing in after.loops.items()
                                 if device not in before.loops},
                                [mount for mount in after.mounts if mount not in before.mounts])
                run.kept = new.describe()
            errors = first.remove() if own else first.clean()
            if errors:
                run.error = f"cleanup failed: {'; '.join(errors)}"
    return run


def _load(driver: str, executable: str, first: Node, plan: PodPlan, settings: Settings,
          record: Callable[[Call], None]) -> Kubelet | str:
    """init the driver as the kubelet's prober does; the Kubelet for it, or why it is not loaded."""
    env = {**settings.env, "FLEXVOL_ROOT": settings.data_root} if settings.data_root else settings.env
    caller = Caller(executable, env=env, timeout=settings.timeout, on_done=record)
    init = caller.call("init")
    if not init.ok:
        return f"init failed, the kubelet would not load {driver}: {init.describe()}"
    capabilities = init.field("capabilities")
    attach = True
    if isinstance(capabilities, dict):
        attach = bool(next((value for key, value in capabilities.items() if key.lower() == "attach"), True))
    node = first if driver == first.driver_name else Node(first.root, driver, first.token)
    return Kubelet(caller, node, attach, plan.node_name)
