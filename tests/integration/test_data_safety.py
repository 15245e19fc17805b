"""Regression tests for data-safety defects found by attacking the driver on real loop devices.

Each test names the defect it guards; each reproduces the attack as it was first found.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from flexvol.core import kernel
from tests.helpers.driver import Driver, is_mount_point, options


def _loops_of(driver: Driver, volume_id: str) -> list[str]:
    return kernel.loops_of_file(str(driver.backing_file(volume_id)))


def _immutable(path: str) -> bool:
    done = subprocess.run(["lsattr", "-d", path], capture_output=True, text=True, check=False)
    return done.returncode == 0 and "i" in done.stdout.split()[0]


# ---- one backing file, one loop device -------------------------------------------------------

def test_rebuilt_record_never_attaches_a_second_loop_device(driver: Driver) -> None:
    """Defect: a record moved aside (it was corrupt) led the next mount to bind a second loop
    device over the same backing file, and writes through both corrupted the filesystem."""
    first, second = driver.dir("p"), driver.dir("q")
    driver.ok("mount", first, options("v2"))
    Path(first, "a.txt").write_text("through the first mount")
    record_path = driver.root / "records" / "v2.json"
    record_path.write_text("garbage{")
    assert "corrupt" in driver.fail("mount", second, options("v2")).message
    record_path.rename(driver.root / "records" / "v2.json.aside")
    driver.ok("mount", second, options("v2"))
    assert len(_loops_of(driver, "v2")) == 1
    # Both pod dirs see one filesystem: what one writes, the other reads.
    assert Path(second, "a.txt").read_text() == "through the first mount"
    driver.ok("unmount", first)
    driver.ok("unmount", second)
    assert _loops_of(driver, "v2") == []


def test_record_without_loop_device_finds_the_attached_one(driver: Driver) -> None:
    """Defect: an adopted or rebuilt record names no loop device; the attached one must still
    be found by its backing file instead of attaching another."""
    first, second = driver.dir("p"), driver.dir("q")
    driver.ok("mount", first, options("v2"))
    record_path = driver.root / "records" / "v2.json"
    record = json.loads(record_path.read_text())
    record["loop_device"] = None
    record_path.write_text(json.dumps(record))
    driver.ok("mount", second, options("v2"))
    assert len(_loops_of(driver, "v2")) == 1
    driver.ok("unmount", second)
    # The first pod still uses the device: it stays.
    assert len(_loops_of(driver, "v2")) == 1
    driver.ok("unmount", first)
    assert _loops_of(driver, "v2") == []


def test_repair_adopting_a_file_without_record_never_attaches_a_second_device(driver: Driver) -> None:
    """Defect: `flexvol repair --apply` adopted a mounted volume's file under a new record that
    named no loop device, and the next mount bound a second device over the file."""
    from tests.helpers.cli import flexvol

    first, second = driver.dir("p"), driver.dir("q")
    driver.ok("mount", first, options("v3"))
    (driver.root / "records" / "v3.json").unlink()
    result = flexvol("repair", "--apply", root=str(driver.root), kubelet_root=str(driver.base / "mnt"))
    assert result.exit_code in (0, 3), result.output
    assert (driver.root / "records" / "v3.json").exists()
    driver.ok("mount", second, options("v3"))
    assert len(_loops_of(driver, "v3")) == 1
    driver.ok("unmount", first)
    driver.ok("unmount", second)
    assert _loops_of(driver, "v3") == []


# ---- a deleted backing file whose path was filled again --------------------------------------

def test_unmount_keeps_the_device_of_a_deleted_file_when_another_file_took_its_path(
        driver: Driver) -> None:
    """Defect: with the backing file deleted and an older copy put back at its path, unmount
    detached the device that held the only copy of what the pod wrote since."""
    target = driver.dir("p")
    driver.ok("mount", target, options("r"))
    backing = driver.backing_file("r")
    aside = driver.base / "r-copy.img"
    subprocess.run(["sync"], check=True)
    shutil.copyfile(backing, aside)
    backing.unlink()
    Path(target, "new.txt").write_text("written after the file was deleted")
    shutil.copyfile(aside, backing)
    (device,) = [d for d, b in kernel.loop_devices().items()
                 if b == str(backing) + kernel.DELETED_SUFFIX]
    result = driver.fail("unmount", target)
    assert device in result.message and "only copy" in result.message
    assert kernel.loop_backing_file(device) == str(backing) + kernel.DELETED_SUFFIX
    # The data is still there, on the device, for the operator to copy back.
    probe = driver.base / "probe"
    probe.mkdir()
    subprocess.run(["mount", "-o", "ro", device, str(probe)], check=True)
    try:
        assert (probe / "new.txt").read_text() == "written after the file was deleted"
    finally:
        subprocess.run(["umount", str(probe)], check=True)
    # Once the device's content is copied back, the retried unmount lets it go.
    subprocess.run(["cp", "--sparse=always", device, str(backing)], check=True)
    driver.ok("unmount", target)
    assert kernel.loop_backing_file(device) is None


# ---- mount targets: no symlinks, no /proc, no races ------------------------------------------

def test_mount_refuses_a_target_whose_parent_is_a_symlink(driver: Driver) -> None:
    """Defect: a symlinked parent of the pod dir led the mount, the write guard and the fsGroup
    onto the symlink's target."""
    elsewhere = driver.base / "elsewhere"
    (elsewhere / "pod").mkdir(parents=True)
    link = driver.base / "mnt" / "link"
    link.symlink_to(elsewhere)
    result = driver.fail("mount", str(link / "pod"), options("s1", fsGroup="1234"))
    assert "symlink" in result.message
    assert not is_mount_point(str(elsewhere / "pod"))
    assert not _immutable(str(elsewhere / "pod"))
    assert (elsewhere / "pod").stat().st_gid == 0
    assert driver.loops() == []


def test_mount_refuses_the_data_root_reached_through_a_bind_mount(driver: Driver) -> None:
    """The data root's dirs are recognised by identity, not only by name."""
    driver.ok("mount", driver.dir("first"), options("b1"))
    alias = driver.base / "mnt" / "alias"
    alias.mkdir()
    subprocess.run(["mount", "--bind", str(driver.root), str(alias)], check=True)
    try:
        result = driver.fail("mount", str(alias / "volumes"), options("b2"))
        assert "data root" in result.message
        assert not _immutable(str(driver.root / "volumes"))
    finally:
        subprocess.run(["umount", str(alias)], check=True)
    driver.ok("unmount", driver.dir("first"))


def test_mount_refuses_proc_paths(driver: Driver) -> None:
    """Defect: /proc/self/cwd/x was accepted as a mount dir (the kubelet's cwd is usually /)."""
    for path in ("/proc/self/cwd/x", "/proc/1/root/tmp/x", "/sys/x", "/dev/shm/x"):
        result = driver.fail("mount", path, options("p1"))
        assert "refusing" in result.message, result.message
    assert driver.loops() == [] and not driver.backing_file("p1").exists()


def test_mount_refuses_dot_dot_components(driver: Driver) -> None:
    target = driver.dir("a") + "/../b"
    result = driver.fail("mount", target, options("d1"))
    assert ".." in result.message
    assert driver.loops() == []


def test_unmount_does_not_follow_a_symlinked_parent(driver: Driver) -> None:
    target = driver.dir("real/pod")
    driver.ok("mount", target, options("u1"))
    link = driver.base / "mnt" / "alias"
    link.symlink_to(driver.base / "mnt" / "real")
    result = driver.fail("unmount", str(link / "pod"))
    assert "symlink" in result.message
    assert is_mount_point(target)
    driver.ok("unmount", target)


def test_overlong_path_component_is_a_clean_failure(driver: Driver) -> None:
    """Defect: a path component over 255 bytes gave "internal error" and a traceback."""
    (driver.root / "log").mkdir(parents=True, exist_ok=True)
    target = driver.dir("x" * 300)
    result = driver.fail("mount", target, options("n1"))
    assert "internal error" not in result.message
    assert "255" in result.message
    journal = (driver.root / "log" / "calls.jsonl").read_text()
    assert "Traceback" not in journal


def test_failed_calls_leave_no_lock_files(driver: Driver) -> None:
    """Defect: lock files were never removed; 200 failed read-only mounts left 200."""
    for index in range(20):
        driver.fail("mount", driver.dir(f"ro{index}"), options(f"missing{index}", mode="ro"))
    locks = driver.root / "locks"
    assert sorted(os.listdir(locks)) == []
    # A live volume keeps working across the removal of locks of volumes that are gone.
    target = driver.dir("live")
    driver.ok("mount", target, options("live"))
    driver.ok("unmount", target)


# ---- namespaces --------------------------------------------------------------------------------

def _pod(volume_id: str, namespace: str) -> str:
    return options(volume_id, **{"kubernetes.io/pod.namespace": namespace,
                                 "kubernetes.io/pod.name": "p"})


def test_a_pod_of_another_namespace_cannot_mount_the_volume(driver: Driver) -> None:
    """Defect: an inline flexVolume with another namespace's volumeID mounted its data."""
    from tests.helpers.cli import flexvol

    mine, theirs = driver.dir("mine"), driver.dir("theirs")
    driver.ok("mount", mine, _pod("db", "shop"))
    Path(mine, "secret.txt").write_text("shop's data")
    result = driver.fail("mount", theirs, _pod("db", "attacker"))
    assert "belongs to namespace shop" in result.message and "flexvol share db" in result.message
    assert not is_mount_point(theirs)
    assert driver.record("db")["namespace"] == "shop"
    # An operator's explicit choice lets other namespaces in, and can take it back.
    assert flexvol("share", "db", root=str(driver.root)).exit_code == 0
    driver.ok("mount", theirs, _pod("db", "attacker"))
    assert Path(theirs, "secret.txt").read_text() == "shop's data"
    driver.ok("unmount", theirs)
    assert flexvol("share", "db", "--off", root=str(driver.root)).exit_code == 0
    driver.fail("mount", theirs, _pod("db", "attacker"))
    journal = (driver.root / "log" / "calls.jsonl").read_text()
    assert journal.count('"verb":"toolkit:share"') == 2
    driver.ok("unmount", mine)


# ---- claims checked against the kernel --------------------------------------------------------

def test_unmount_never_says_detached_for_a_device_held_open(driver: Driver) -> None:
    """Defect: a device held open got only autoclear from the kernel, and the journal said
    "detached" all the same. It is kept bound now (autoclear taken back: a device that vanished
    at its holder's last close had its number reused under that holder), the holder named, and
    the volume's next unmount detaches it."""
    target = driver.dir("p")
    driver.ok("mount", target, options("h1"))
    (device,) = _loops_of(driver, "h1")
    held = os.open(device, os.O_RDONLY)
    try:
        driver.ok("unmount", target)
        last = json.loads((driver.root / "log" / "calls.jsonl").read_text().splitlines()[-1])
        assert f"detached {device}" not in last["notes"], last["notes"]
        assert f"kept {device} attached: held open by pid {os.getpid()} (" in " ".join(last["notes"]), last
        assert kernel.loop_backing_file(device) is not None
    finally:
        os.close(held)
    assert kernel.loop_backing_file(device) is not None, "the device went with its holder's close"
    driver.ok("mount", target, options("h1"))
    assert _loops_of(driver, "h1") == [device], "the kept device serves the volume again"
    driver.ok("unmount", target)
    assert kernel.loop_backing_file(device) is None
