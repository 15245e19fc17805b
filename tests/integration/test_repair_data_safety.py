"""Repair and rollback say only what the kernel confirms, never race the kubelet, never
overwrite a file and keep a mount's mode: one regression test per defect, on real loop devices."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from flexvol.core import kernel, mounting, operations, state
from flexvol.core.config import Config
from flexvol.core.errors import CommandFailed, FlexvolError
from flexvol.core.journal import CallInfo
from flexvol.core.options import parse_spec
from flexvol.toolkit import repair, repair_apply
from tests.helpers.cli import flexvol
from tests.helpers.driver import Driver, is_mount_point, options
from tests.integration.test_toolkit_repair import (
    attach_by_hand,
    detach_by_hand,
    kinds,
    kubelet_root,
    make_volume_with_data,
    read_back,
)


def pod_dir(driver: Driver, uid: str = "uid-1", name: str = "data") -> str:
    return str(Path(kubelet_root(driver), "pods", uid, "volumes", "flexvol~loop", name))


def repair_json(driver: Driver, *extra: str) -> tuple[int, list[dict]]:
    result = flexvol("repair", *extra, "--json", root=str(driver.root), kubelet_root=kubelet_root(driver))
    return result.exit_code, json.loads(result.stdout)


def wait_gone(device: str, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while kernel.loop_backing_file(device) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    return kernel.loop_backing_file(device) is None


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- defect 6: every claim checked against the kernel ----------------------------------------

def test_defect6_leaked_loop_beside_a_busy_device_is_the_one_detached(driver: Driver) -> None:
    """Defect 6a: repair --apply detached only the recorded (busy) device and said "done"."""
    target = driver.dir("pod")
    driver.ok("mount", target, options("v1"))
    busy = kernel.mounts_at(target)[-1].source
    leaked = attach_by_hand(driver.backing_file("v1"))
    try:
        code, found = repair_json(driver, "--apply")
        assert kinds(found) == ["leaked-loop"] and found[0]["subject"] == leaked
        assert found[0]["result"] == f"done: detached {leaked}", found
        assert code == 0
        assert kernel.loop_backing_file(leaked) is None, "the kernel still has the leaked device"
        assert kernel.loop_backing_file(busy) and is_mount_point(target), "the mounted one is kept"
    finally:
        driver.ok("unmount", target)


def test_defect6_device_held_open_reports_detach_pending_not_detached(driver: Driver) -> None:
    """Defect 6b: a device someone holds open only gets autoclear; repair said "detached"."""
    make_volume_with_data(driver)
    device = attach_by_hand(driver.backing_file("v1"))
    holder = os.open(device, os.O_RDONLY)
    try:
        code, found = repair_json(driver, "--apply")
        assert kinds(found) == ["leaked-loop"]
        result = found[0]["result"]
        assert "detach pending" in result and "held open by" in result, result
        assert f"pid {os.getpid()}" in result, result
        assert "detached" not in result.replace("detach pending", ""), result
        assert code != 0
        assert kernel.loop_backing_file(device), "held open: the kernel keeps it until the last close"
    finally:
        os.close(holder)
    assert wait_gone(device), "autoclear frees it at the last close"


def test_defect6_rollback_reports_a_detach_the_kernel_did_not_do(driver: Driver,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 6c: rollback marked each undo step done because it did not raise."""
    held: list[int] = []

    def fail_after_opening(device: str, target: str, spec: object, undo: object, **_: object) -> bool:
        held.append(os.open(device, os.O_RDONLY))  # someone else holds the device open
        raise CommandFailed("mount failed on purpose")

    monkeypatch.setattr(mounting, "ensure_mounted", fail_after_opening)
    config = Config(str(driver.root))
    call = CallInfo("mount")
    target = driver.dir("pod")
    try:
        with pytest.raises(FlexvolError):
            operations.mount(config, target, parse_spec(json.loads(options("v1"))), call)
        device = driver.loops()[0]
        assert kernel.loop_backing_file(device), "held open: still attached"
        assert f"rolled back: detach {device}" not in call.notes, call.notes
        assert any(note.startswith(f"rollback failed: detach {device}") and "still" in note
                   for note in call.notes), call.notes
        # what did go is reported as rolled back, after the kernel and the disk confirmed it
        assert not driver.backing_file("v1").exists()
        assert any(note.startswith("rolled back: remove new backing file") for note in call.notes)
    finally:
        for fd in held:
            os.close(fd)
    assert not driver.loops() or wait_gone(driver.loops()[0])


# ---- defect 7: repair never races the kubelet ------------------------------------------------

@pytest.mark.parametrize("kubelet_got_to", ["unmounted", "removed"])
def test_defect7_repair_never_remounts_a_pod_dir_the_kubelet_let_go(driver: Driver,
                                                                    kubelet_got_to: str) -> None:
    """Defect 7: findings made, then the kubelet unmounts (and removes) the pod dir: applying
    them must not recreate the dir nor mount the volume there again."""
    config = Config(str(driver.root))
    target = pod_dir(driver)
    driver.ok("mount", target, options("v1"))
    subprocess.run(["umount", target], check=True)  # lost behind the driver's back
    found = repair.findings(config, kubelet_root(driver))
    assert "pod-dir-unmounted" in [item.kind for item in found]
    # the kubelet's TearDown: the driver's unmount, then rmdir
    driver.ok("unmount", target)
    if kubelet_got_to == "removed":
        os.rmdir(target)
    results = []
    for item in found:
        try:
            results.append(repair_apply.apply(config, item))
        except FlexvolError as error:
            results.append(f"failed: {error}")
    assert not driver.mounts(), results
    assert os.path.exists(target) == (kubelet_got_to == "unmounted"), "the dir was recreated"
    assert not driver.loops(), results
    assert state.load_target(config, target) is None


# ---- defect 8: recovery never writes to a path that exists -----------------------------------

def test_defect8_recovery_never_overwrites_another_volume(driver: Driver) -> None:
    """Defect 8: recovering r's deleted-file device copied it over volume r-recovered-loopN."""
    payload = make_volume_with_data(driver, "r")
    device = attach_by_hand(driver.backing_file("r"))
    driver.backing_file("r").unlink()
    # a new file now sits at r's path, and another volume has the name recovery would pick
    driver.backing_file("r").write_bytes(b"someone else's file")
    other = f"r-recovered-{os.path.basename(device)}"
    other_payload = make_volume_with_data(driver, other)
    before = {name: digest(driver.backing_file(name)) for name in ("r", other)}
    code, found = repair_json(driver, "--apply")
    [item] = [entry for entry in found if entry["kind"] == "deleted-file-loop"]
    assert {name: digest(driver.backing_file(name)) for name in ("r", other)} == before, \
        "a file that existed was overwritten"
    assert item["result"].startswith("done: copied"), item
    assert code == 0, found
    saved = item["result"].split(" to ", 1)[1].split(";", 1)[0]
    assert item["result"].endswith(f"; detached {device}"), item
    assert saved.endswith(".img") and Path(saved).exists()
    assert saved not in (str(driver.backing_file("r")), str(driver.backing_file(other)))
    assert wait_gone(device)
    read_back(driver, other, other_payload)
    recovered = Path(saved).name[: -len(".img")]
    read_back(driver, recovered, payload)


# ---- defect 9: the mount's mode and options survive repair -----------------------------------

def test_defect9_read_only_mount_is_remounted_read_only_with_its_options(driver: Driver) -> None:
    """Defect 9: a ro mount lost behind the driver's back came back rw."""
    make_volume_with_data(driver)
    target = pod_dir(driver)
    driver.ok("mount", target, options("v1", mode="ro", mountOptions="noatime"))
    subprocess.run(["umount", target], check=True)
    detach_by_hand(driver)
    code, found = repair_json(driver, "--apply")
    assert kinds(found) == ["pod-dir-unmounted"] and found[0]["result"].startswith("done"), found
    assert code == 0
    [mount] = kernel.mounts_at(target)
    assert mount.read_only, mount
    assert "noatime" in mount.options.split(","), mount
    driver.ok("unmount", target)


def test_defect9_target_record_without_mode_needs_a_person(driver: Driver) -> None:
    """Defect 9: an old target record does not say ro or rw; repair must not guess."""
    make_volume_with_data(driver)
    config = Config(str(driver.root))
    target = pod_dir(driver)
    driver.ok("mount", target, options("v1"))
    subprocess.run(["umount", target], check=True)
    detach_by_hand(driver)
    old = {"schema": state.SCHEMA, "path": target, "volume_id": "v1"}
    Path(state.target_path(config, target)).write_text(json.dumps(old) + "\n")
    code, found = repair_json(driver, "--apply")
    assert kinds(found) == ["pod-dir-unmounted"], found
    assert found[0]["action"] == "" and "needs a person" in found[0]["detail"], found
    assert "read-only" in found[0]["detail"], found
    assert code != 0
    assert not is_mount_point(target) and not driver.loops()
    # The kubelet's own unmount, when it comes, lifts the write guard as always.
    driver.ok("unmount", target)
