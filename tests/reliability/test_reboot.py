"""Scenario 3, reboot simulation: volumes mounted in several pod dirs lose every mount and loop
device at once, without the driver (umount, losetup -d, as a reboot would). Then the kubelet's
replay: mount again for pods still in use, unmount for pods that are gone. Every volume comes
back with its data, and no pod dir is written to while its volume is not mounted there.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers.driver import options
from tests.reliability.harness import (
    FIGURES,
    Harness,
    is_immutable,
    journal_tracebacks,
    leaks,
    settled_loops,
    write_probe,
)

# pod -> volume; the pods marked gone are deleted while the node is down
PODS = {"p1": "v1", "p2": "v1", "p3": "v2", "p4": "v3", "p5": "v4", "p6": "v2"}
GONE = {"p2", "p5"}


def simulate_reboot(harness: Harness) -> None:
    """Drop every mount and loop device of this data root behind the driver's back."""
    for mount in reversed(harness.mounts()):
        subprocess.run(["umount", mount.mount_point], check=True)
    for device in harness.loops():
        subprocess.run(["losetup", "-d", device], check=True)
    assert harness.mounts() == [] and settled_loops(harness) == []


def mount_args(harness: Harness, pod: str, volume_id: str) -> list[list[str]]:
    """The calls the kubelet makes to give `pod` its volume, in either mode."""
    opts = options(volume_id, size="48Mi")
    if harness.attach:
        return [["mountdevice", harness.dir(f"global-{volume_id}"), f"flexvol:{volume_id}", opts],
                ["mount", harness.dir(pod), opts]]
    return [["mount", harness.dir(pod), opts]]


@pytest.mark.parametrize("attach", [False, True], ids=["mount", "mountdevice+mount"])
def test_reboot_every_volume_comes_back_and_unmounted_pod_dirs_refuse_writes(
        make_harness, attach: bool) -> None:
    harness: Harness = make_harness("reboot", attach=attach)
    data = {}
    for pod, volume_id in PODS.items():
        for args in mount_args(harness, pod, volume_id):
            harness.must(*args)
        payload = os.urandom(64 << 10)
        Path(harness.dir(pod), f"{pod}.bin").write_bytes(payload)
        data[pod] = payload
    os.sync()
    uuids = {volume_id: harness.uuid(volume_id) for volume_id in set(PODS.values())}

    simulate_reboot(harness)

    # A container still running with the pod dir (or a restarted one) writes into it now.
    pod_dirs = [harness.dir(pod) for pod in PODS]
    if attach:
        pod_dirs += [harness.dir(f"global-{volume_id}") for volume_id in set(PODS.values())]
    written = [path for path in pod_dirs if write_probe(path)]
    guarded = [path for path in pod_dirs if is_immutable(path)]
    FIGURES.add("reboot", "unmounted dirs probed", len(pod_dirs))
    FIGURES.add("reboot", "writes into unmounted pod dirs", len(written))
    assert not written, f"writes went into unmounted dirs: {written}"
    assert len(guarded) == len(pod_dirs)

    # The kubelet's replay after the restart.
    for pod, volume_id in PODS.items():
        if pod in GONE:
            harness.must("unmount", harness.dir(pod))
            assert not is_immutable(harness.dir(pod)), "write guard kept on a dir of a gone pod"
            os.rmdir(harness.dir(pod))  # what the kubelet does next
        else:
            for args in mount_args(harness, pod, volume_id):
                harness.must(*args)
    recovered = set()
    for pod, volume_id in PODS.items():
        if pod not in GONE:
            for other, other_volume in PODS.items():
                if other_volume == volume_id:
                    assert Path(harness.dir(pod), f"{other}.bin").read_bytes() == data[other]
            recovered.add(volume_id)
    # v4 lost its only pod: it comes back whole in a new one
    harness.must(*mount_args(harness, "new", "v4")[-1])
    if attach:
        harness.must(*mount_args(harness, "new", "v4")[0])
        harness.must(*mount_args(harness, "new", "v4")[-1])
    assert Path(harness.dir("new"), "p5.bin").read_bytes() == data["p5"]
    recovered.add("v4")
    for volume_id, uuid in uuids.items():
        assert harness.uuid(volume_id) == uuid, f"{volume_id} formatted twice"
    in_use = {volume_id for pod, volume_id in PODS.items() if pod not in GONE} | {"v4"}
    assert len(harness.loops()) == len(in_use), harness.loops()
    FIGURES.add("reboot", "volumes", len(uuids))
    FIGURES.add("reboot", "volumes recovered with their data", len(recovered))

    # and everything releases cleanly afterwards
    for mount in reversed(harness.mounts()):
        verb = "unmountdevice" if "/global-" in mount.mount_point else "unmount"
        harness.must(verb, mount.mount_point)
        assert not is_immutable(mount.mount_point)
    assert not leaks(harness) and not journal_tracebacks(harness)


def test_mount_dir_is_write_guarded_only_while_a_volume_is_mounted_over_it(harness: Harness) -> None:
    """Reliability scenario 3 (reboot): the guard goes on before the mount, off at unmount."""
    target = harness.dir("pod")
    harness.must("mount", target, options("v1", size="48Mi"))
    assert write_probe(target), "the mounted volume itself must stay writable"
    subprocess.run(["umount", target], check=True)  # the mount is lost behind the driver's back
    assert is_immutable(target) and not write_probe(target)
    harness.must("unmount", target)
    assert not is_immutable(target) and write_probe(target)
    os.rmdir(target)
    assert settled_loops(harness) == []


def test_failed_mount_leaves_no_write_guard(harness: Harness) -> None:
    """The mount itself fails after the guard went on: the rollback lifts it again."""
    target = harness.dir("pod")
    os.makedirs(target)
    volumes = harness.root / "volumes"
    volumes.mkdir(parents=True)
    backing = harness.backing_file("v1")
    backing.write_bytes(b"")
    os.truncate(backing, 64 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(backing)], check=True, capture_output=True)
    # smaller than the filesystem inside: mount(8) refuses it ("bad geometry")
    os.truncate(backing, 48 << 20)
    result = harness.must("mount", target, options("v1", size="48Mi"), status="Failure")
    assert "mount" in result.message
    assert not is_immutable(target) and os.listdir(target) == []
    assert harness.mounts() == [] and settled_loops(harness) == []
