"""What the kubelet and the controller-manager do around the driver calls of one volume.

docs/flexvolume.md sections 3 and 5: skip mountdevice / mount when the target is already a mount point;
create the directory (0750) otherwise; bind-mount deviceMountPath to the pod dir when mount
is "Not supported"; umount + remove the directory when unmount is "Not supported"; remove the
directory after a failed mount and after a successful unmount; remember "Not supported" per
verb for the life of the plugin object.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from flexvol.sanity.caller import Call, Caller, KubeletCache
from flexvol.sanity.node import Node, is_mount_point, run

NODE_NAME = "sanity-node"
FS_TYPE = "kubernetes.io/fsType"
READ_WRITE = "kubernetes.io/readwrite"
PV_NAME = "kubernetes.io/pvOrVolumeName"


class CheckFailed(Exception):
    """A check's verdict: what is wrong, and the call that shows it (if one does)."""

    def __init__(self, message: str, call: Call | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.call = call


@dataclass
class Volume:
    """One PV as the kubelet tracks it on this node."""

    pv: str
    options: dict[str, str]
    fs_type: str = "ext4"
    read_only: bool = False
    device: str = ""
    device_mounted: bool = False
    # the size the options ask for, in bytes (0: unknown)
    size_bytes: int = 0
    pods: dict[str, str] = field(default_factory=dict)


def expect_ok(call: Call, what: str) -> Call:
    if not call.ok:
        raise CheckFailed(f"{what}: {call.describe()}", call)
    return call


class Kubelet:
    """The kubelet and controller-manager for one check: a fresh plugin object (cache)."""

    def __init__(self, caller: Caller, node: Node, attach: bool, node_name: str = NODE_NAME) -> None:
        self.node_name = node_name
        self.caller = caller
        self.node = node
        self.attach = attach
        self.cache = KubeletCache(caller)

    # ---- options (docs/flexvolume.md section 4) --------------------------------------------------

    def base(self, volume: Volume, **overrides: str) -> str:
        body = {
            FS_TYPE: volume.fs_type,
            READ_WRITE: "ro" if volume.read_only else "rw",
            PV_NAME: volume.pv,
        }
        body.update(volume.options)
        body.update(overrides)
        return json.dumps(body)

    def pod_options(self, volume: Volume, pod_uid: str, extra: dict[str, str] | None = None) -> str:
        body = {
            FS_TYPE: volume.fs_type,
            READ_WRITE: "ro" if volume.read_only else "rw",
            PV_NAME: volume.pv,
            "kubernetes.io/pod.name": f"pod-{pod_uid[:8]}",
            "kubernetes.io/pod.namespace": "default",
            "kubernetes.io/pod.uid": pod_uid,
            "kubernetes.io/serviceAccount.name": "default",
            **(extra or {}),
        }
        body.update(volume.options)
        return json.dumps(body)

    # ---- set up ------------------------------------------------------------------------------

    def setup(self, volume: Volume, pod_uid: str, extra: dict[str, str] | None = None) -> str:
        """Everything from attach to mount for one pod; returns the pod volume dir."""
        if self.attach:
            self.attach_device(volume)
            self.mount_device(volume)
        return self.mount_pod(volume, pod_uid, extra)

    def attach_device(self, volume: Volume) -> None:
        base = self.base(volume)
        call = self.cache.call("attach", base, self.node_name)
        if not call.not_supported:
            expect_ok(call, "attach (controller-manager)")
            volume.device = str(call.field("device") or "")
        call = self.cache.call("isattached", base, self.node_name)
        if not call.not_supported:
            expect_ok(call, "isattached (controller-manager)")
            if call.field("attached") is not True:
                raise CheckFailed("isattached says false right after a successful attach", call)
        call = self.cache.call("waitforattach", volume.device, base)
        if not call.not_supported:
            expect_ok(call, "waitforattach (kubelet)")
            device = str(call.field("device") or "")
            if not device:
                raise CheckFailed("waitforattach answered Success without a device", call)
            volume.device = device

    def mount_device(self, volume: Volume) -> None:
        path = self.node.device_mount_path(volume.pv)
        if is_mount_point(path):
            volume.device_mounted = True
            return
        os.makedirs(path, 0o750, exist_ok=True)
        call = self.cache.call("mountdevice", path, volume.device, self.base(volume))
        if call.not_supported:
            if volume.device:
                _format_and_mount(volume.device, path, volume.fs_type, volume.read_only)
        elif not call.ok:
            _remove_dir(path)
            raise CheckFailed(f"mountdevice: {call.describe()}", call)
        volume.device_mounted = True

    def mount_pod(self, volume: Volume, pod_uid: str, extra: dict[str, str] | None = None) -> str:
        path = self.node.pod_dir(pod_uid, volume.pv)
        volume.pods[pod_uid] = path
        if is_mount_point(path):
            return path
        os.makedirs(path, 0o750, exist_ok=True)
        call = self.cache.call("mount", path, self.pod_options(volume, pod_uid, extra))
        if call.not_supported:
            if not self.attach:
                raise CheckFailed("mount answered Not supported but the driver is not attachable: the "
                                  "kubelet has no device mount to bind into the pod", call)
            _bind(self.node.device_mount_path(volume.pv), path, volume.read_only)
        elif not call.ok:
            _remove_dir(path)
            del volume.pods[pod_uid]
            raise CheckFailed(f"mount: {call.describe()}", call)
        return path

    # ---- tear down ---------------------------------------------------------------------------

    def unmount_pod(self, volume: Volume, pod_uid: str) -> None:
        path = volume.pods.pop(pod_uid, self.node.pod_dir(pod_uid, volume.pv))
        if not os.path.exists(path):
            return
        self._unmount_with("unmount", path)

    def _unmount_with(self, verb: str, path: str) -> None:
        """The driver's unmount verb, or a plain umount where it answers Not supported."""
        call = self.cache.call(verb, path)
        if call.not_supported:
            _umount(path)
        elif not call.ok:
            raise CheckFailed(f"{verb}: {call.describe()}", call)
        _remove_after_unmount(path, verb, call)

    def unmount_device(self, volume: Volume) -> None:
        path = self.node.device_mount_path(volume.pv)
        if is_mount_point(path):
            self._unmount_with("unmountdevice", path)
        elif os.path.isdir(path):
            _remove_dir(path)
        volume.device_mounted = False

    def detach(self, volume: Volume) -> None:
        call = self.cache.call("detach", volume.pv, self.node_name)
        if not call.not_supported:
            expect_ok(call, "detach (controller-manager)")

    def teardown(self, volume: Volume) -> None:
        for pod_uid in list(volume.pods):
            self.unmount_pod(volume, pod_uid)
        if self.attach:
            self.unmount_device(volume)
            self.detach(volume)

    def teardown_quietly(self, volume: Volume) -> None:
        """Best effort after a failed check; the leftover scan reports what stays."""
        try:
            self.teardown(volume)
        except (CheckFailed, OSError):
            pass


def _remove_dir(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass


def _remove_after_unmount(path: str, verb: str, call: Call) -> None:
    # The kubelet's os.Remove after a successful unmount; failing it fails the operation.
    if is_mount_point(path):
        raise CheckFailed(f"{verb} answered Success but {path} is still a mount point", call)
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError as error:
        raise CheckFailed(f"after {verb}, the kubelet cannot remove {path}: {error.strerror} "
                          f"(entries: {', '.join(sorted(os.listdir(path))[:5])})", call) from None


def _bind(source: str, target: str, read_only: bool) -> None:
    done = run(["mount", "--bind", source, target])
    if done.code:
        raise CheckFailed(f"the kubelet's bind mount of {source} failed: {done.out.strip()}")
    if read_only:
        run(["mount", "-o", "remount,bind,ro", target])


def _umount(path: str) -> None:
    if is_mount_point(path):
        done = run(["umount", path])
        if done.code:
            raise CheckFailed(f"the kubelet's own umount of {path} failed: {done.out.strip()}")


def _format_and_mount(device: str, path: str, fs_type: str, read_only: bool) -> None:
    """The kubelet's SafeFormatAndMount for mountdevice "Not supported" (docs/flexvolume.md section 3)."""
    fs_type = fs_type or "ext4"
    probe = run(["blkid", "-p", device])
    if probe.code == 2 and not read_only:
        flags = ["-F", "-m0"] if fs_type.startswith("ext") else ["-f"] if fs_type == "xfs" else []
        made = run([f"mkfs.{fs_type}", *flags, device])
        if made.code:
            raise CheckFailed(f"the kubelet's mkfs.{fs_type} {device} failed: {made.out.strip()[-300:]}")
    done = run(["mount", "-t", fs_type, "-o", "ro" if read_only else "rw", device, path])
    if done.code:
        raise CheckFailed(f"the kubelet's mount of {device} failed: {done.out.strip()}")
