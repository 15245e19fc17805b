"""Run the checks against one driver and collect the results (no printing here)."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from flexvol.core.errors import FlexvolError, InvalidInput
from flexvol.sanity.caller import Call, Caller
from flexvol.sanity.checks import ALL_VERBS, CHECK_NAMES, CHECKS, Check
from flexvol.sanity.context import DEFAULT_OPTIONS, Context
from flexvol.sanity.kubelet import CheckFailed
from flexvol.sanity.node import Node, driver_name_of

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
ATTACH_MODES = ("auto", "kubelet", "controller")


@dataclass
class Settings:
    executable: str
    options: dict[str, str] | None = None
    attach_mode: str = "auto"
    repeat: int = 3
    only: list[str] = field(default_factory=list)
    skip: list[str] = field(default_factory=list)
    keep: bool = False
    timeout: float = 30.0
    env: dict[str, str] = field(default_factory=dict)
    tmp_dir: str | None = None


@dataclass
class CheckResult:
    name: str
    section: str
    title: str
    status: str
    reason: str = ""
    argv: list[str] = field(default_factory=list)
    output: str = ""
    seconds: float = 0.0
    calls: int = 0


@dataclass
class Latency:
    verb: str
    calls: int
    median_ms: float
    max_ms: float


@dataclass
class Report:
    driver: str
    driver_name: str
    attach: bool
    capabilities: dict[str, bool]
    results: list[CheckResult]
    latency: list[Latency]
    root: str
    kept: bool

    @property
    def failed(self) -> bool:
        return any(result.status == FAIL for result in self.results)

    def as_dict(self) -> dict[str, object]:
        body = asdict(self)
        body["passed"] = not self.failed
        return body


Event = Callable[[str, str], None]


def selected_checks(only: list[str], skip: list[str]) -> list[Check]:
    for name in [*only, *skip]:
        if name not in CHECK_NAMES:
            raise InvalidInput(f"unknown check {name!r}", f"choose from {', '.join(CHECK_NAMES)}")
    return [check for check in CHECKS if (not only or check.name in only) and check.name not in skip]


def run_sanity(settings: Settings, on_event: Event | None = None) -> Report:
    """Run the selected checks. `on_event(check, verb)` reports progress for a live view."""
    executable = os.path.abspath(settings.executable)
    if not os.access(executable, os.X_OK) or os.path.isdir(executable):
        raise InvalidInput(f"{settings.executable} is not an executable file",
                           "pass the path of the driver executable")
    if settings.attach_mode not in ATTACH_MODES:
        raise InvalidInput(f"unknown attach mode {settings.attach_mode!r}", f"use {', '.join(ATTACH_MODES)}")
    checks = selected_checks(settings.only, settings.skip)
    driver_name = driver_name_of(executable)
    node = Node.create(driver_name, settings.tmp_dir)
    current = {"check": ""}

    def on_call(verb: str) -> None:
        if on_event:
            on_event(current["check"], verb)

    # FLEXVOL_ROOT gives flexvol (and drivers that honour it) a data root inside the temporary
    # node, so every loop device and file the checks make is ours to find and remove.
    env = {"FLEXVOL_ROOT": node.data_root, **settings.env}
    caller = Caller(executable, env=env, timeout=settings.timeout, on_call=on_call)
    results: list[CheckResult] = []
    capabilities: dict[str, bool] = {}
    attach = settings.attach_mode == "controller"
    try:
        probe = caller.call("init")
        found = probe.field("capabilities")
        if probe.ok and isinstance(found, dict):
            capabilities = dict(found)
        if settings.attach_mode == "auto":
            # The default is attachable (docs/flexvolume.md section 2): an omitted key means true.
            attach = bool(next((value for key, value in capabilities.items() if key.lower() == "attach"),
                               True))
        ctx = Context(caller, node, attach, capabilities, dict(settings.options or DEFAULT_OPTIONS),
                      repeat=max(1, settings.repeat))
        for check in checks:
            current["check"] = check.name
            if on_event:
                on_event(check.name, "")
            results.append(_run_one(check, ctx, probe))
    finally:
        kept = settings.keep
        if not kept:
            errors = node.remove()
            if errors:
                raise FlexvolError(f"could not clean up {node.root}: {'; '.join(errors)}",
                                   "unmount and detach them by hand")
    return Report(executable, driver_name, attach, capabilities, results, latency(caller.calls),
                  node.root, kept)


def _run_one(check: Check, ctx: Context, probe: Call) -> CheckResult:
    result = CheckResult(check.name, check.section, check.title, PASS)
    if check.name != "init" and not probe.ok:
        result.status, result.reason = SKIP, f"init failed, so the kubelet would not load the driver: " \
                                             f"{probe.describe()}"
        return result
    reason = check.needs(ctx)
    if reason:
        result.status, result.reason = SKIP, reason
        return result
    started = time.monotonic()
    first_call = len(ctx.caller.calls)
    try:
        result.reason = check.run(ctx) or ""
    except CheckFailed as failed:
        result.status, result.reason = FAIL, failed.message
        if failed.call is not None:
            result.argv = failed.call.argv
            result.output = failed.call.output.strip()[:2000]
    except OSError as error:
        result.status, result.reason = FAIL, f"{type(error).__name__}: {error}"
    except Exception as error:
        # A fault in the check itself must not stop the run or skip the leftover scan.
        result.status, result.reason = FAIL, f"the check itself failed: {type(error).__name__}: {error}"
    leftovers = ctx.node.leftovers()
    if leftovers:
        note = f"left behind {leftovers.describe()}"
        if result.status != FAIL:
            result.reason = note
        elif note not in result.reason:
            result.reason = f"{result.reason}; {note}"
        result.status = FAIL
        errors = ctx.node.clean()
        if errors:
            result.reason += f"; cleanup failed: {'; '.join(errors)}"
    result.seconds = round(time.monotonic() - started, 2)
    result.calls = len(ctx.caller.calls) - first_call
    return result


def latency(calls: list[Call]) -> list[Latency]:
    by_verb: dict[str, list[float]] = {}
    for call in calls:
        if not call.cached and not call.timed_out and call.code is not None:
            verb = call.verb if call.verb in ALL_VERBS else "(other)"
            by_verb.setdefault(verb, []).append(call.seconds * 1000)
    return [Latency(verb, len(times), round(statistics.median(times), 1), round(max(times), 1))
            for verb, times in sorted(by_verb.items())]
