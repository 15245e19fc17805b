"""The attachable lifecycle (docs/flexvolume.md section 5): attach, waitforattach, mountdevice, mount,
unmount, unmountdevice, detach, each repeated, on real loop devices."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.driver import Driver, is_mount_point, options

NODE = "node-1"


def test_init_is_attachable(attach_driver: Driver) -> None:
    assert attach_driver.ok("init").reply["capabilities"]["attach"] is True


def test_full_attach_lifecycle_with_repeats(attach_driver: Driver) -> None:
    d = attach_driver
    spec = options("av1", pv="pv-a")
    global_dir = d.dir("plugins/kubernetes.io/flexvolume/flexvol/loop/mounts/pv-a")
    pod_dir = d.dir("pods/uid1/volumes/flexvol~loop/pv-a")

    for _ in range(2):
        device = d.ok("attach", spec, NODE).reply["device"]
    assert device == "flexvol:av1"
    assert d.ok("isattached", spec, NODE).reply["attached"] is True
    assert d.ok("isattached", spec, "other-node").reply["attached"] is False
    for _ in range(2):
        assert d.ok("waitforattach", device, spec).reply["device"] == device
    assert d.loops() == [], "attach and waitforattach do no machine-specific work"

    for _ in range(2):
        d.ok("mountdevice", global_dir, device, spec)
    for _ in range(2):
        d.ok("mount", pod_dir, spec)
    assert is_mount_point(global_dir) and is_mount_point(pod_dir)
    assert len(d.loops()) == 1
    assert len(d.mounts()) == 2
    Path(pod_dir, "f").write_text("attached data")
    assert Path(global_dir, "f").read_text() == "attached data"

    for _ in range(2):
        d.ok("unmount", pod_dir)
    assert not is_mount_point(pod_dir)
    assert len(d.loops()) == 1, "the global mount still holds the loop device"
    for _ in range(2):
        d.ok("unmountdevice", global_dir)
    assert not is_mount_point(global_dir)
    assert d.loops() == []
    for _ in range(2):
        d.ok("detach", "pv-a", NODE)
    assert d.ok("isattached", spec, NODE).reply["attached"] is False

    # and back again: the data is still there
    d.ok("attach", spec, NODE)
    d.ok("mountdevice", global_dir, device, spec)
    assert Path(global_dir, "f").read_text() == "attached data"
    d.ok("unmountdevice", global_dir)
    d.ok("detach", "pv-a", NODE)


def test_detach_of_unknown_pv_succeeds(attach_driver: Driver) -> None:
    attach_driver.ok("detach", "never-attached", NODE)


def test_detach_keeps_other_nodes(attach_driver: Driver) -> None:
    spec = options("av2", pv="pv-rwx")
    attach_driver.ok("attach", spec, "n1")
    attach_driver.ok("attach", spec, "n2")
    attach_driver.ok("detach", "pv-rwx", "n1")
    assert attach_driver.ok("isattached", spec, "n1").reply["attached"] is False
    assert attach_driver.ok("isattached", spec, "n2").reply["attached"] is True
    attach_driver.ok("detach", "pv-rwx", "n2")


def test_detach_on_the_node_frees_an_unused_loop_device(attach_driver: Driver) -> None:
    """Kubelet-attached mode: detach runs on the node, after unmountdevice."""
    d = attach_driver
    spec = options("av3", pv="pv-k")
    global_dir = d.dir("global/pv-k")
    d.ok("attach", spec, NODE)
    d.ok("mountdevice", global_dir, "flexvol:av3", spec)
    # The loop device stays if someone detached the mount without the driver (a crash).
    import subprocess

    subprocess.run(["umount", global_dir], check=True)
    assert len(d.loops()) == 1
    d.ok("detach", "pv-k", NODE)
    assert d.loops() == []
    # The kubelet's unmountdevice, when it comes, lifts the write guard of the dir.
    d.ok("unmountdevice", global_dir)


def test_mount_and_unmount_work_the_same_in_attach_mode(attach_driver: Driver) -> None:
    target = attach_driver.dir("pod")
    attach_driver.ok("mount", target, options("av4"))
    assert is_mount_point(target)
    attach_driver.ok("unmount", target)
    assert attach_driver.loops() == []


def test_attach_needs_a_pv_name_and_node(attach_driver: Driver) -> None:
    attach_driver.fail("attach", '{"volumeID": "v1"}', NODE)
    attach_driver.fail("attach", options("v1"), "")
    attach_driver.fail("detach", "", NODE)
    attach_driver.fail("detach", "../x", NODE)
