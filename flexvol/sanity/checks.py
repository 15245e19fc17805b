"""The checks. Each names the FLEXVOLUME.md section it enforces and raises CheckFailed.

A check that needs a capability the driver does not claim returns a SKIP reason from `needs`.
Every check tears down what it set up; the engine then scans for leftovers (section 10).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass

from flexvol.sanity.caller import MINIMAL_PATH, Call
from flexvol.sanity.context import Context, MiB
from flexvol.sanity.kubelet import NODE_NAME, CheckFailed, Volume, expect_ok
from flexvol.sanity.node import is_mount_point, mounts_at

PAYLOAD_NAME = "sanity-payload.bin"
ALL_VERBS = ("init", "getvolumename", "attach", "isattached", "detach", "waitforattach",
             "mountdevice", "unmountdevice", "mount", "unmount", "expandvolume", "expandfs")
ARITY = {"init": 0, "getvolumename": 1, "attach": 2, "isattached": 2, "detach": 2, "waitforattach": 2,
         "mountdevice": 3, "unmountdevice": 1, "mount": 2, "unmount": 1, "expandvolume": 4, "expandfs": 5}
INIT_LIMIT_SECONDS = 1.0


@dataclass(frozen=True)
class Check:
    name: str
    section: str
    title: str
    # Returns an optional note shown with a PASS.
    run: Callable[[Context], str | None]
    needs: Callable[[Context], str] = lambda ctx: ""


# ---- helpers -------------------------------------------------------------------------------

def write_payload(directory: str) -> bytes:
    data = os.urandom(64 * 1024)
    with open(os.path.join(directory, PAYLOAD_NAME), "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return data


def read_payload(directory: str) -> bytes | None:
    try:
        with open(os.path.join(directory, PAYLOAD_NAME), "rb") as handle:
            return handle.read()
    except OSError:
        return None


def one_mount(path: str, call: Call | None, what: str) -> None:
    count = len(mounts_at(path))
    if count == 0:
        raise CheckFailed(f"{what}: {path} is not a mount point", call)
    if count > 1:
        raise CheckFailed(f"{what}: {count} mounts are stacked at {path}; a repeat must add none", call)


def dir_left_clean(path: str, call: Call | None, what: str) -> None:
    if is_mount_point(path):
        raise CheckFailed(f"{what}: {path} is still a mount point", call)
    if os.path.isdir(path) and os.listdir(path):
        raise CheckFailed(f"{what}: {path} is not empty: {', '.join(sorted(os.listdir(path))[:5])}", call)


def files_under(root: str) -> set[str]:
    found = set()
    for directory, _dirs, files in os.walk(root):
        found.update(os.path.join(directory, name) for name in files)
    return found


def run_with_teardown(ctx: Context, volumes: list[Volume], body: Callable[[], None]) -> None:
    kubelet = ctx.kubelet()
    try:
        body()
    finally:
        for volume in volumes:
            kubelet.teardown_quietly(volume)


# ---- output and exit codes (sections 2, 10) ------------------------------------------------

def check_init(ctx: Context) -> None:
    plugin_dir = os.path.dirname(os.path.realpath(ctx.caller.executable))
    before = _listing(plugin_dir)
    calls = [ctx.caller.call("init") for _ in range(3)]
    for call in calls:
        expect_ok(call, "init")
        capabilities = call.field("capabilities")
        if capabilities is None:
            raise CheckFailed("init has no capabilities object (capabilities.attach must be a boolean)", call)
        if not isinstance(call.field("capabilities"), dict):
            raise CheckFailed("init capabilities is not an object", call)
        attach = [value for key, value in capabilities.items() if key.lower() == "attach"]
        if attach and not isinstance(attach[0], bool):
            raise CheckFailed("capabilities.attach is not a JSON boolean", call)
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
    except CheckFailed as failed:
        # The exact contract violation is the finding, not the flow step it broke.
        wrong = next((call for call in ctx.caller.calls[start:] if call.problem), None)
        if wrong is not None:
            raise CheckFailed(wrong.problem, wrong) from None
        raise failed from None


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


# ---- lifecycles (sections 3, 5) ------------------------------------------------------------

def check_lifecycle(ctx: Context) -> None:
    volume = ctx.volume()
    kubelet = ctx.kubelet()

    def body() -> None:
        pod = ctx.pod()
        path = kubelet.setup(volume, pod)
        last = ctx.caller.calls[-1]
        one_mount(path, last, "after mount")
        if ctx.attach:
            one_mount(ctx.node.device_mount_path(volume.pv), last, "after mountdevice")
        data = write_payload(path)
        kubelet.teardown(volume)
        leftovers = ctx.node.leftovers()
        if leftovers:
            raise CheckFailed(f"after the last unmount of {volume.pv}: left behind {leftovers.describe()}",
                              ctx.caller.calls[-1])
        if ctx.attach:
            call = ctx.caller.call("isattached", kubelet.base(volume), NODE_NAME)
            if not call.not_supported:
                expect_ok(call, "isattached after detach")
                if call.field("attached") is not False:
                    raise CheckFailed("isattached still says true after detach", call)
        # A second pod, later: the data must still be there.
        path = kubelet.setup(volume, ctx.pod())
        if read_payload(path) != data:
            raise CheckFailed(f"data written to {volume.pv} is gone after unmount and mount again",
                              ctx.caller.calls[-1])
        kubelet.teardown(volume)

    run_with_teardown(ctx, [volume], body)


def check_repeat(ctx: Context) -> None:
    volume = ctx.volume()
    kubelet = ctx.kubelet()
    times = ctx.repeat
    pod = ctx.pod()
    pod_dir = ctx.node.pod_dir(pod, volume.pv)
    global_path = ctx.node.device_mount_path(volume.pv)

    def again(verb: str, *args: str) -> Call:
        call = None
        for attempt in range(times):
            call = ctx.caller.call(verb, *args)
            if call.not_supported:
                return call
            expect_ok(call, f"{verb} (repeat {attempt + 1} of {times})")
        assert call is not None
        return call

    def body() -> None:
        if ctx.attach:
            attached = again("attach", kubelet.base(volume), NODE_NAME)
            volume.device = str(attached.field("device") or "")
            waited = again("waitforattach", volume.device, kubelet.base(volume))
            if not waited.not_supported:
                volume.device = str(waited.field("device") or "")
            os.makedirs(global_path, 0o750, exist_ok=True)
            call = again("mountdevice", global_path, volume.device, kubelet.base(volume))
            if not call.not_supported:
                one_mount(global_path, call, f"after {times} mountdevice calls")
        # The pod dir does not exist yet: mount must create it (section 10).
        call = again("mount", pod_dir, kubelet.pod_options(volume, pod))
        if not call.not_supported:
            one_mount(pod_dir, call, f"after {times} mount calls")
        call = again("unmount", pod_dir)
        dir_left_clean(pod_dir, call, f"after {times} unmount calls")
        never = ctx.node.pod_dir(ctx.pod(), volume.pv)
        call = ctx.caller.call("unmount", never)
        if not call.not_supported:
            expect_ok(call, "unmount of a directory that never existed")
        if ctx.attach:
            call = again("unmountdevice", global_path)
            dir_left_clean(global_path, call, f"after {times} unmountdevice calls")
            again("detach", volume.pv, NODE_NAME)

    run_with_teardown(ctx, [volume], body)


def check_concurrent(ctx: Context) -> None:
    volume = ctx.volume()
    kubelet = ctx.kubelet()
    pods = [ctx.pod() for _ in range(3)]

    def body() -> None:
        if ctx.attach:
            kubelet.attach_device(volume)
            kubelet.mount_device(volume)
        calls: dict[str, Call] = {}
        for pod in pods:
            os.makedirs(ctx.node.pod_dir(pod, volume.pv), 0o750, exist_ok=True)
            volume.pods[pod] = ctx.node.pod_dir(pod, volume.pv)

        def mount(pod: str) -> None:
            calls[pod] = ctx.caller.call("mount", volume.pods[pod], kubelet.pod_options(volume, pod))

        threads = [threading.Thread(target=mount, args=(pod,)) for pod in pods]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for pod in pods:
            if calls[pod].not_supported:
                raise CheckFailed("mount answered Not supported; this check needs the driver's own mount",
                                  calls[pod])
            expect_ok(calls[pod], "one of 3 concurrent mounts of one volume")
            one_mount(volume.pods[pod], calls[pod], "after concurrent mounts")
        sources = {mounts_at(volume.pods[pod])[-1].device_number for pod in pods}
        if len(sources) != 1:
            raise CheckFailed(f"3 concurrent mounts of one volume used {len(sources)} different devices; "
                              "they must share one", calls[pods[-1]])
        data = write_payload(volume.pods[pods[0]])
        if read_payload(volume.pods[pods[1]]) != data:
            raise CheckFailed("data written through one pod's mount is not visible in another's",
                              calls[pods[1]])
        kubelet.teardown(volume)

    run_with_teardown(ctx, [volume], body)


def check_read_only(ctx: Context) -> None:
    volume = ctx.volume()
    fresh = ctx.volume(read_only=True)
    kubelet = ctx.kubelet()

    def body() -> None:
        path = kubelet.setup(volume, ctx.pod())
        data = write_payload(path)
        kubelet.teardown(volume)
        volume.read_only = True
        path = kubelet.setup(volume, ctx.pod())
        last = ctx.caller.calls[-1]
        here = mounts_at(path)
        if not here or not here[-1].read_only:
            raise CheckFailed(f"readwrite=ro but {path} is mounted read-write", last)
        if read_payload(path) != data:
            raise CheckFailed("the read-only mount does not show the data written before", last)
        try:
            with open(os.path.join(path, "sanity-write-test"), "wb"):
                pass
        except OSError:
            pass
        else:
            raise CheckFailed(f"a file could be created in the read-only mount {path}", last)
        kubelet.teardown(volume)
        # A read-only mount of a volume that does not exist yet must never format it.
        try:
            path = kubelet.setup(fresh, ctx.pod())
        except CheckFailed:
            return
        here = mounts_at(path)
        if here and not here[-1].read_only:
            raise CheckFailed("readwrite=ro on a new volume gave a read-write mount", ctx.caller.calls[-1])

    run_with_teardown(ctx, [volume, fresh], body)


def check_no_reformat(ctx: Context) -> None:
    volume = ctx.volume()
    kubelet = ctx.kubelet()

    def body() -> None:
        path = kubelet.setup(volume, ctx.pod())
        data = write_payload(path)
        kubelet.teardown(volume)
        volume.fs_type = "ext3"
        reformatted = None
        try:
            path = kubelet.setup(volume, ctx.pod())
            reformatted = ctx.caller.calls[-1]
            kept = read_payload(path) == data
            kubelet.teardown(volume)
        except CheckFailed:
            pass
        volume.fs_type = "ext4"
        if reformatted is not None:
            fate = "the data is still there" if kept else "the data written before is gone"
            raise CheckFailed(f"a volume holding an ext4 filesystem with data was mounted as fsType ext3 "
                              f"instead of being refused; {fate}", reformatted)
        path = kubelet.setup(volume, ctx.pod())
        if read_payload(path) != data:
            raise CheckFailed("after a refused mount with another fsType, the data written before is gone",
                              ctx.caller.calls[-1])
        kubelet.teardown(volume)

    run_with_teardown(ctx, [volume], body)


def check_rollback(ctx: Context) -> None:
    volume = ctx.volume()
    kubelet = ctx.kubelet()

    def refused(what: str, action: Callable[[], object]) -> Call | None:
        before = files_under(ctx.node.data_root)
        try:
            action()
        except CheckFailed as failed:
            call = failed.call
        else:
            return None
        leftovers = ctx.node.leftovers()
        if leftovers:
            raise CheckFailed(f"a failed {what} left behind {leftovers.describe()}", call)
        new = sorted(files_under(ctx.node.data_root) - before)
        if new:
            raise CheckFailed(f"a failed {what} left new files behind: {', '.join(new[:3])}", call)
        return call

    def body() -> None:
        kubelet.setup(volume, ctx.pod())
        kubelet.teardown(volume)
        volume.fs_type = "ext3"
        if ctx.attach:
            # The attach succeeds and is the controller's; the failure under test is mountdevice's.
            kubelet.attach_device(volume)

        def action() -> None:
            if ctx.attach:
                kubelet.mount_device(volume)
            else:
                kubelet.mount_pod(volume, ctx.pod())

        if refused("mount with the wrong fsType", action) is None:
            raise CheckFailed("a mount asking ext3 of an ext4 volume succeeded (expected a failure)",
                              ctx.caller.calls[-1])
        kubelet.teardown_quietly(volume)
        volume.fs_type = "ext4"
        target = os.path.join(ctx.scratch_dir("rollback"), "a-regular-file")
        with open(target, "w"):
            pass
        verb = "mountdevice" if ctx.attach else "mount"

        if ctx.attach:
            kubelet.attach_device(volume)

        def onto_file() -> None:
            if ctx.attach:
                call = ctx.caller.call("mountdevice", target, volume.device, kubelet.base(volume))
            else:
                call = ctx.caller.call("mount", target, kubelet.pod_options(volume, ctx.pod()))
            if not call.ok and not call.not_supported:
                raise CheckFailed(call.describe(), call)
            ctx.caller.call("unmountdevice" if ctx.attach else "unmount", target)

        refused(f"{verb} onto a regular file", onto_file)
        if ctx.attach:
            kubelet.detach(volume)

    run_with_teardown(ctx, [volume], body)


# ---- resize, fsGroup (sections 4, 7) -------------------------------------------------------

def check_expandfs(ctx: Context) -> str | None:
    fs_type, size = expand_fs_type(ctx)
    volume = ctx.volume(fs_type=fs_type, size_bytes=size)
    kubelet = ctx.kubelet()
    old, new = size, size + 32 * MiB

    def body() -> None:
        path = kubelet.setup(volume, ctx.pod())
        data = write_payload(path)
        before = _fs_bytes(path)
        args = (kubelet.base(volume), volume.device, path, str(new), str(old))
        call = None
        for attempt in range(ctx.repeat):
            call = expect_ok(ctx.caller.call("expandfs", *args), f"expandfs (call {attempt + 1})")
            grown = _fs_bytes(path)
            if grown <= before:
                raise CheckFailed(f"expandfs answered Success but the filesystem at {path} did not grow "
                                  f"({before} bytes before, {grown} after)", call)
            device = mounts_at(path)[-1].source
            size = _block_device_bytes(device)
            if size is not None and size < new:
                raise CheckFailed(f"after expandfs the device {device} holds {size} bytes, less than the "
                                  f"{new} asked for", call)
        if read_payload(path) != data:
            raise CheckFailed("data written before expandfs is gone", call)
        kubelet.teardown(volume)

    run_with_teardown(ctx, [volume], body)
    if fs_type != "ext4":
        return f"checked with {fs_type}: without CAP_SYS_RESOURCE here, ext4 cannot grow online"
    return None


CAP_SYS_RESOURCE = 24
XFS_MIN_BYTES = 320 * MiB


def expand_fs_type(ctx: Context) -> tuple[str, int]:
    """ext4 grows online only with CAP_SYS_RESOURCE (ext4_resize_begin); without it, use xfs."""
    if has_capability(CAP_SYS_RESOURCE) or not shutil.which("mkfs.xfs", path=MINIMAL_PATH):
        return "ext4", ctx.size_bytes
    return "xfs", max(ctx.size_bytes, XFS_MIN_BYTES)


def has_capability(bit: int) -> bool:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> bit & 1)
    except (OSError, ValueError, IndexError):
        pass
    return True


def _needs_resize(ctx: Context) -> str:
    if not ctx.capability("requiresFSResize", True):
        return "the driver declares requiresFSResize false, so the kubelet never calls expandfs"
    if not has_capability(CAP_SYS_RESOURCE) and not shutil.which("mkfs.xfs", path=MINIMAL_PATH):
        return "this machine lacks CAP_SYS_RESOURCE (no online ext4 growth) and mkfs.xfs"
    return ""


def _fs_bytes(path: str) -> int:
    stats = os.statvfs(path)
    return stats.f_blocks * stats.f_frsize


def _block_device_bytes(device: str) -> int | None:
    try:
        with open(f"/sys/class/block/{os.path.basename(device)}/size") as handle:
            return int(handle.read()) * 512
    except (OSError, ValueError):
        return None


def check_fsgroup(ctx: Context) -> None:
    volumes = [ctx.volume(), ctx.volume()]
    kubelet = ctx.kubelet()

    def body() -> None:
        for volume, key, gid in ((volumes[0], "kubernetes.io/mounterArgs.FsGroup", 4321),
                                 (volumes[1], "kubernetes.io/fsGroup", 4322)):
            path = kubelet.setup(volume, ctx.pod(), {key: str(gid)})
            got = os.stat(path).st_gid
            if got != gid:
                raise CheckFailed(f"with {key}={gid} and capability fsGroup false, the volume root {path} "
                                  f"belongs to group {got}; the driver must apply the fsGroup itself",
                                  ctx.caller.calls[-1])
            kubelet.teardown(volume)

    run_with_teardown(ctx, volumes, body)


def _needs_own_fsgroup(ctx: Context) -> str:
    if ctx.capability("fsGroup", True):
        return "the driver declares the fsGroup capability true, so the kubelet applies fsGroup itself"
    return ""


CHECKS: tuple[Check, ...] = (
    Check("init", "1, 2, 10", "init answers Success, capabilities are booleans, fast, writes nothing",
          check_init),
    Check("bounded-time", "2, 6, 10", "every call ends within the timeout; no child keeps the pipes open",
          check_bounded_time),
    Check("output", "2, 10", "every answer, also to empty or odd arguments, is exactly one JSON object",
          check_output),
    Check("exit-codes", "2, 10", "Success exits 0; Failure carries a message", check_exit_codes),
    Check("not-supported-stable", "2, 3, 10", "which verbs answer Not supported never depends on arguments",
          check_not_supported_stable),
    Check("lifecycle", "3, 5, 10", "the kubelet's full flow, data survives, the last unmount frees all",
          check_lifecycle),
    Check("repeat", "6, 10", "every verb repeated succeeds without a second mount", check_repeat),
    Check("concurrent", "6, 10", "concurrent mounts of one volume succeed and share one device",
          check_concurrent),
    Check("read-only", "4, 10", "readwrite=ro mounts read-only and never formats", check_read_only),
    Check("no-reformat", "8.7, 9, 10", "a volume with data is never formatted again", check_no_reformat),
    Check("rollback", "5, 10", "a failed mount leaves no mount, loop device or file behind", check_rollback),
    Check("expandfs", "7, 10", "expandfs grows the filesystem to the new size, repeatably", check_expandfs,
          _needs_resize),
    Check("fsgroup", "4, 7", "the pod's fsGroup is applied when the fsGroup capability is false",
          check_fsgroup, _needs_own_fsgroup),
)

CHECK_NAMES = tuple(check.name for check in CHECKS)

