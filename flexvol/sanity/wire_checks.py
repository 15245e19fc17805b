"""Checks of the wire contract: init, output, exit codes, "Not supported", bounded time
(docs/flexvolume.md sections 1, 2, 3, 6, 10)."""

from __future__ import annotations

import json
import os

from flexvol.sanity.caller import Call
from flexvol.sanity.context import Context
from flexvol.sanity.kubelet import NODE_NAME, CheckFailed, Volume, expect_ok
from flexvol.sanity.node import is_mount_point
from flexvol.sanity.observe import run_with_teardown

ALL_VERBS = ("init", "getvolumename", "attach", "isattached", "detach", "waitforattach",
             "mountdevice", "unmountdevice", "mount", "unmount", "expandvolume", "expandfs")
ARITY = {"init": 0, "getvolumename": 1, "attach": 2, "isattached": 2, "detach": 2, "waitforattach": 2,
         "mountdevice": 3, "unmountdevice": 1, "mount": 2, "unmount": 1, "expandvolume": 4, "expandfs": 5}
INIT_LIMIT_SECONDS = 1.0


def check_init(ctx: Context) -> None:
    plugin_dir = os.path.dirname(os.path.realpath(ctx.caller.executable))
    before = _listing(plugin_dir)
    calls = [ctx.caller.call("init") for _ in range(3)]
    for call in calls:
        expect_ok(call, "init")
        capabilities = call.field("capabilities")
        if not isinstance(capabilities, dict):
            raise CheckFailed("init has no capabilities object (capabilities.attach must be a boolean)", call)
        attach = [value for key, value in capabilities.items() if key.lower() == "attach"]
        if not attach or not isinstance(attach[0], bool):
            raise CheckFailed("init capabilities.attach is missing or not a JSON boolean (section 10)", call)
    fastest = min(call.seconds for call in calls)
    if fastest > INIT_LIMIT_SECONDS:
        raise CheckFailed(f"init took {fastest:.2f}s at best; it must answer within "
                          f"{INIT_LIMIT_SECONDS:g}s (it runs at every probe)", calls[0])
    after = _listing(plugin_dir)
    if after != before:
        changed = sorted(set(after.items()) ^ set(before.items()))
        raise CheckFailed(f"init changed the plugin directory {plugin_dir} ({changed[0][0]}); every "
                          "write there makes the kubelet re-probe", calls[0])


def _listing(directory: str) -> dict[str, int]:
    try:
        return {entry.name: entry.stat(follow_symlinks=False).st_mtime_ns for entry in os.scandir(directory)}
    except OSError:
        return {}


def check_output(ctx: Context) -> None:
    kubelet = ctx.kubelet()
    volume = ctx.volume()
    variants: list[tuple[str, list[str]]] = []
    for verb in ALL_VERBS:
        variants.append((verb, []))
        variants.append((verb, [""] * max(ARITY[verb], 1)))
    # Unknown keys and values parsed from strings must be tolerated (section 10).
    odd = kubelet.base(volume, **{"example.com/unknown": "x", "kubernetes.io/secret/token": "c2VjcmV0"})
    variants += [("getvolumename", [odd]), ("isattached", [odd, NODE_NAME]),
                 ("expandvolume", [odd, "", "", ""]), ("mount", ["relative/dir", "{not json"])]
    for verb, args in variants:
        call = ctx.caller.call(verb, *args)
        if call.problem:
            raise CheckFailed(call.problem, call)
    for verb in ("sanity-unknown-verb", ""):
        call = ctx.caller.call(verb)
        if call.problem:
            raise CheckFailed(call.problem, call)
        if not call.not_supported:
            raise CheckFailed(f"an unknown command {verb!r} must answer Not supported, "
                              f"got {call.status!r}", call)
    call = ctx.caller.call("getvolumename", kubelet.base(volume))
    if not call.not_supported:
        raise CheckFailed("getvolumename must answer Not supported (its name is ignored, #60046); "
                          f"got {call.status!r}", call)


def check_exit_codes(ctx: Context) -> None:
    volume = ctx.volume()
    kubelet = ctx.kubelet()
    start = len(ctx.caller.calls)

    def body() -> None:
        bad = ctx.caller.call("mount", ctx.node.pod_dir(ctx.pod(), volume.pv), "{not json")
        if bad.problem:
            raise CheckFailed(bad.problem, bad)
        if bad.ok:
            raise CheckFailed("mount with options that are not JSON answered Success", bad)
        pod = ctx.pod()
        kubelet.setup(volume, pod)
        kubelet.teardown(volume)
        for call in ctx.caller.calls[start:]:
            if call.problem:
                raise CheckFailed(call.problem, call)

    try:
        run_with_teardown(ctx, [volume], body)
    except CheckFailed:
        # The exact contract violation is the finding, not the flow step it broke.
        wrong = next((call for call in ctx.caller.calls[start:] if call.problem), None)
        if wrong is not None:
            raise CheckFailed(wrong.problem, wrong) from None
        raise


def check_not_supported_stable(ctx: Context) -> None:
    rw = ctx.volume()
    ro = Volume(rw.pv, rw.options, rw.fs_type, read_only=True)
    kubelet = ctx.kubelet()
    pod_rw, pod_ro = ctx.pod(), ctx.pod()
    global_path = ctx.node.device_mount_path(rw.pv)
    size = str(ctx.size_bytes)

    def variants(volume: Volume, pod: str) -> dict[str, list[str]]:
        base = kubelet.base(volume)
        return {
            "getvolumename": [base],
            "attach": [base, NODE_NAME],
            "isattached": [base, NODE_NAME],
            "waitforattach": ["", base],
            "mountdevice": [global_path, "", base],
            "unmountdevice": [global_path],
            "mount": [ctx.node.pod_dir(pod, volume.pv), kubelet.pod_options(volume, pod)],
            "unmount": [ctx.node.pod_dir(pod, volume.pv)],
            "expandvolume": [base, f"{ctx.node.driver_name}/mounts/{volume.pv}", size, size],
            "expandfs": [base, "", ctx.node.pod_dir(pod, volume.pv), size, size],
            "detach": [volume.pv, NODE_NAME],
        }

    answers: dict[str, list[Call]] = {}

    def body() -> None:
        for volume, pod in ((rw, pod_rw), (ro, pod_ro), (None, "")):
            table = variants(volume or rw, pod or ctx.pod())
            for verb, args in table.items():
                if volume is None:
                    args = [""] * len(args)
                else:
                    for path in (global_path, ctx.node.pod_dir(pod, volume.pv)):
                        os.makedirs(path, 0o750, exist_ok=True)
                call = ctx.caller.call(verb, *args)
                answers.setdefault(verb, []).append(call)
        for verb, calls in answers.items():
            kinds = {call.not_supported for call in calls}
            if len(kinds) > 1:
                yes = next(call for call in calls if call.not_supported)
                no = next(call for call in calls if not call.not_supported)
                raise CheckFailed(
                    f"{verb} answered Not supported for some arguments and {no.status or 'garbage'!r} for "
                    f"others; the kubelet caches Not supported per verb, so it must never depend on the "
                    f"volume (argv answered Not supported: {json.dumps(yes.argv[1:])[:300]})", no)

    try:
        body()
    finally:
        # Undo whatever the rw and ro calls mounted, the way the kubelet would.
        for pod in (pod_rw, pod_ro):
            path = ctx.node.pod_dir(pod, rw.pv)
            if os.path.exists(path):
                ctx.caller.call("unmount", path)
        if is_mount_point(global_path) or os.path.isdir(global_path):
            ctx.caller.call("unmountdevice", global_path)
        ctx.caller.call("detach", rw.pv, NODE_NAME)


def check_bounded_time(ctx: Context) -> None:
    for verb in ALL_VERBS:
        call = ctx.caller.call(verb, *([""] * ARITY[verb]))
        if call.timed_out:
            raise CheckFailed(f"{call.problem} (limit {ctx.caller.timeout:g}s)", call)
    volume = ctx.volume()
    kubelet = ctx.kubelet()

    def body() -> None:
        kubelet.setup(volume, ctx.pod())
        kubelet.teardown(volume)

    try:
        run_with_teardown(ctx, [volume], body)
    except CheckFailed as failed:
        if failed.call and failed.call.timed_out:
            raise CheckFailed(f"{failed.call.problem} (limit {ctx.caller.timeout:g}s)", failed.call) from None
        raise
