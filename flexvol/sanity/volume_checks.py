"""Checks of a volume's life on the node: the kubelet's flows, repeats, concurrency,
read-only, never reformatting, rollback (docs/flexvolume.md sections 3 to 6, 8.7, 9, 10)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from flexvol.sanity.caller import Call
from flexvol.sanity.context import Context
from flexvol.sanity.kubelet import NODE_NAME, CheckFailed, expect_ok
from flexvol.sanity.node import mounts_at
from flexvol.sanity.observe import (
    dir_left_clean,
    files_under,
    one_mount,
    read_payload,
    run_with_teardown,
    write_payload,
)


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
