"""Scenario 5, full and broken disks: a data root that fills up, a read-only data root, corrupt
records, a backing file deleted or truncated under a live loop device, lock files left behind.

Each fault: a clear Failure naming the cause and the fix, no data lost, and normal service once
the cause is removed. Data roots here are small tmpfs mounts made and removed by the test.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers.driver import options
from tests.reliability.harness import (
    FIGURES,
    Harness,
    Outcome,
    journal_tracebacks,
    leaks,
    mounts_at,
    settled_loops,
)

SIZE = "16Mi"
PAYLOAD = os.urandom(192 << 10)


def tmpfs_root(harness: Harness, size: str = "40m") -> None:
    harness.root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "flexvol-test-root",
                    str(harness.root)], check=True)


def write_payload(directory: str, name: str = "payload.bin") -> None:
    path = Path(directory, name)
    path.write_bytes(PAYLOAD)
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)


def payload_intact(directory: str, name: str = "payload.bin") -> bool:
    try:
        return Path(directory, name).read_bytes() == PAYLOAD
    except OSError:
        return False


def fill(root: Path, leave: int = 0) -> Path:
    """Fill the filesystem of `root` up to `leave` bytes free with a filler file."""
    filler = root / "filler"
    stats = os.statvfs(root)
    room = stats.f_bavail * stats.f_frsize - leave
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    chunk = b"\xff" * (1 << 20)
    try:
        while room > 0:
            room -= os.write(fd, chunk[:min(len(chunk), room)])
    except OSError as error:
        assert error.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def fault(name: str, outcome: Outcome, *cause_words: str) -> None:
    """A refused call under a fault: one clean Failure whose message names the cause and fix."""
    FIGURES.add("disk faults", "faulty calls")
    assert not outcome.problems, outcome.problems
    assert outcome.status == "Failure", f"{name}: {outcome.output}"
    assert "internal error" not in outcome.message, outcome.message
    assert "; " in outcome.message, f"{name}: no hint in {outcome.message}"
    assert any(word in outcome.message for word in cause_words), f"{name}: {outcome.message}"


def finish(harness: Harness, name: str) -> None:
    for mount in reversed(harness.mounts()):
        if mount.mount_point != str(harness.root):
            harness.must("unmount", mount.mount_point)
    assert not journal_tracebacks(harness)
    found = [item for item in leaks(harness, allowed_mounts=1) if "filler" not in item]
    assert not found and settled_loops(harness) == [], (found, harness.loops())
    FIGURES.add("disk faults", "faults tried")
    FIGURES.add("disk faults", "recovered", 1)


def test_full_data_root_fails_clearly_and_recovers(harness: Harness) -> None:
    """Regression, scenario 5 (full disk): writing the lock holder's pid and creating the backing
    file raised a bare OSError, an internal error instead of a Failure naming the full data root."""
    tmpfs_root(harness)
    live = harness.dir("live")
    harness.must("mount", live, options("v1", size=SIZE))
    write_payload(live)
    uuid = harness.uuid("v1")
    filler = fill(harness.root)

    fault("full: new volume", harness.raw("mount", harness.dir("p2"), options("v2", size=SIZE)),
          "No space left", "space")
    assert not harness.backing_file("v2").exists() and not mounts_at(harness, harness.dir("p2"))
    second = harness.raw("mount", harness.dir("p3"), options("v1", size=SIZE))
    if second.status == "Failure":
        fault("full: existing volume", second, "No space left", "space")
    # writes inside the pod may fail now; what was synced before must survive
    try:
        Path(live, "more.bin").write_bytes(os.urandom(4 << 20))
        os.sync()
    except OSError:
        pass
    harness.must("unmount", live)
    if second.status == "Success":
        harness.must("unmount", harness.dir("p3"))
    assert settled_loops(harness) == []

    filler.unlink()
    harness.must("mount", harness.dir("p2"), options("v2", size=SIZE))
    harness.must("mount", live, options("v1", size=SIZE))
    lost = 0 if payload_intact(live) else 1
    FIGURES.add("disk faults", "data lost", lost)
    assert lost == 0 and harness.uuid("v1") == uuid
    finish(harness, "full data root")


@pytest.mark.parametrize("leave_kib", [0, 16, 128, 1024, 3072, 6144])
def test_data_root_filling_up_at_every_stage_of_a_new_volume(harness: Harness, leave_kib: int) -> None:
    """Full while creating the file, writing records, formatting, mounting or journaling.

    Regression, scenario 5 (full disk): mkfs failing with bare I/O errors over a full pool now
    names the pool's free space as the cause."""
    tmpfs_root(harness, "24m")
    harness.must("init")
    target = harness.dir("p1")
    # the dirs and the journal exist already, as on a node that has served before
    harness.must("mount", harness.dir("seed"), options("seed", size="4Mi"))
    harness.must("unmount", harness.dir("seed"))
    filler = fill(harness.root, leave_kib << 10)
    outcome = harness.raw("mount", target, options("v1", size=SIZE))
    FIGURES.add("disk faults", f"fill leaving {leave_kib} KiB: {outcome.status}")
    if outcome.status == "Failure":
        fault(f"full with {leave_kib} KiB left", outcome, "No space left", "space", "full")
        assert not mounts_at(harness, target) and settled_loops(harness) == []
    else:
        harness.must("unmount", target)
    filler.unlink()
    harness.must("mount", target, options("v1", size=SIZE))
    write_payload(target)
    uuid = harness.uuid("v1")
    harness.must("unmount", target)
    harness.must("mount", target, options("v1", size=SIZE))
    assert payload_intact(target) and harness.uuid("v1") == uuid
    finish(harness, f"full at {leave_kib}")


def test_read_only_data_root_fails_clearly_and_recovers(harness: Harness) -> None:
    """Regression, scenario 5 (read-only data root): opening a lock file raised EROFS as an
    internal error."""
    # A filesystem with a loop device writing to it cannot be remounted read-only (EBUSY), so
    # the volume is idle and its pod's mount was lost, as after a reboot onto a read-only root.
    tmpfs_root(harness)
    pod = harness.dir("pod")
    harness.must("mount", pod, options("v1", size=SIZE))
    write_payload(pod)
    harness.must("mount", harness.dir("gone"), options("v1", size=SIZE))
    subprocess.run(["umount", harness.dir("gone")], check=True)
    harness.must("unmount", pod)
    assert settled_loops(harness) == []
    subprocess.run(["mount", "-o", "remount,ro", str(harness.root)], check=True)
    try:
        fault("ro: new volume", harness.raw("mount", harness.dir("p2"), options("v2", size=SIZE)),
              "Read-only")
        fault("ro: existing volume", harness.raw("mount", pod, options("v1", size=SIZE)), "Read-only")
        fault("ro: unmount of a lost mount", harness.raw("unmount", harness.dir("gone")), "Read-only")
        fault("ro: expandfs", harness.raw("expandfs", options("v1", size=SIZE), "flexvol:v1", pod,
                                          "32Mi", SIZE), "Read-only")
        assert settled_loops(harness) == [] and harness.mounts()[-1].mount_point == str(harness.root)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(harness.root)], check=True)
    harness.must("unmount", harness.dir("gone"))
    harness.must("mount", harness.dir("p2"), options("v2", size=SIZE))
    harness.must("mount", pod, options("v1", size=SIZE))
    lost = 0 if payload_intact(pod) else 1
    FIGURES.add("disk faults", "data lost", lost)
    assert lost == 0
    finish(harness, "read-only data root")


CORRUPTIONS = {
    "truncated": lambda text: text[: len(text) // 2],
    "empty": lambda text: "",
    "binary": lambda text: "\x00\xff\xfe garbage",
    "array": lambda text: "[1, 2]",
    "schema": lambda text: text.replace('"schema":1', '"schema":99'),
}


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_corrupt_volume_record_fails_clearly_and_is_rebuilt(harness: Harness, kind: str) -> None:
    """Regression, scenario 5 (corrupt record): the hint named a `flexvol repair` that does not
    exist; moving the record aside is the fix, and the record is rebuilt from the volume."""
    target = harness.dir("p1")
    harness.must("mount", target, options("v1", size=SIZE))
    write_payload(target)
    harness.must("unmount", target)
    uuid = harness.uuid("v1")
    record = harness.root / "records" / "v1.json"
    record.write_bytes(CORRUPTIONS[kind](record.read_text()).encode("latin-1"))
    fault(f"record {kind}", harness.raw("mount", target, options("v1", size=SIZE)), "corrupt", "schema")
    assert settled_loops(harness) == [] and not mounts_at(harness, target)
    # the fix the message gives: move the record aside
    record.rename(harness.base / f"v1.json.{kind}")
    harness.must("mount", target, options("v1", size=SIZE))
    assert payload_intact(target)
    assert harness.uuid("v1") == uuid, "the rebuilt record must name the same filesystem"
    finish(harness, f"record {kind}")


def test_corrupt_target_and_pv_records_fail_clearly_and_recover(attach_harness: Harness) -> None:
    harness = attach_harness
    target = harness.dir("global")
    harness.must("attach", options("v1", size=SIZE), "node1")
    harness.must("mountdevice", target, "flexvol:v1", options("v1", size=SIZE))
    write_payload(target)
    subprocess.run(["umount", target], check=True)  # the mount is lost behind the driver's back
    target_record = next((harness.root / "targets").glob("*.json"))
    target_record.write_text("{")
    fault("target record", harness.raw("unmountdevice", target), "corrupt")
    target_record.rename(harness.base / "target.json.bad")
    harness.must("unmountdevice", target)
    os.rmdir(target)  # the kubelet removes the dir: the write guard is off
    pv_record = harness.root / "pvs" / "pv-v1.json"
    pv_record.write_text("null")
    fault("pv record", harness.raw("detach", "pv-v1", "node1"), "corrupt")
    pv_record.rename(harness.base / "pv.json.bad")
    harness.must("detach", "pv-v1", "node1")
    harness.must("mountdevice", target, "flexvol:v1", options("v1", size=SIZE))
    assert payload_intact(target)
    harness.must("unmountdevice", target)
    finish(harness, "target and pv records")


def test_backing_file_deleted_under_a_live_loop_device_loses_no_data(harness: Harness) -> None:
    """Regression, scenario 5 (backing file deleted): the last unmount detached the loop device
    that held the only copy of the data."""
    live = harness.dir("live")
    harness.must("mount", live, options("v1", size=SIZE))
    write_payload(live)
    uuid = harness.uuid("v1")
    backing = harness.backing_file("v1")
    backing.unlink()
    fault("deleted: second mount", harness.raw("mount", harness.dir("p2"), options("v1", size=SIZE)),
          "deleted")
    fault("deleted: last unmount", harness.raw("unmount", live), "deleted")
    assert not mounts_at(harness, live)
    devices = harness.loops()
    assert len(devices) == 1, "the loop device holding the only copy must stay attached"
    # the fix the message gives
    subprocess.run(["cp", "--sparse=always", devices[0], str(backing)], check=True)
    os.chmod(backing, 0o600)
    harness.must("unmount", live)
    assert settled_loops(harness) == []
    harness.must("mount", live, options("v1", size=SIZE))
    lost = 0 if payload_intact(live) else 1
    FIGURES.add("disk faults", "data lost", lost)
    assert lost == 0 and harness.uuid("v1") == uuid
    finish(harness, "deleted backing file")


def test_backing_file_replaced_while_old_loop_device_is_mounted_is_refused(harness: Harness) -> None:
    """Regression, scenario 5 (backing file deleted): a new mount reused the loop device of the
    deleted file, so the pod wrote into a file no longer on disk."""
    live = harness.dir("live")
    harness.must("mount", live, options("v1", size=SIZE))
    write_payload(live)
    backing = harness.backing_file("v1")
    copy = harness.base / "copy.img"
    shutil.copyfile(backing, copy)
    backing.unlink()
    copy.rename(backing)  # restored while the old device still serves the pod
    fault("replaced: second mount", harness.raw("mount", harness.dir("p2"), options("v1", size=SIZE)),
          "deleted")
    assert len(harness.loops()) == 1
    # The old device still holds what the pod wrote since the copy: unmount keeps it until
    # its bytes are copied back (regression: it was detached, losing them).
    (device,) = harness.loops()
    fault("replaced: unmount", harness.raw("unmount", live), "only copy")
    assert harness.loops() == [device]
    subprocess.run(["cp", "--sparse=always", device, str(backing)], check=True)
    harness.must("unmount", live)
    harness.must("mount", live, options("v1", size=SIZE))
    assert payload_intact(live)
    finish(harness, "replaced backing file")


@pytest.mark.parametrize("live", [True, False], ids=["under a live loop device", "idle"])
def test_truncated_backing_file_is_refused_and_recovers(harness: Harness, live: bool) -> None:
    """Regression, scenario 5 (backing file truncated): mount(8) got it and failed with "bad
    superblock", naming no cause."""
    target = harness.dir("p1")
    harness.must("mount", target, options("v1", size=SIZE))
    write_payload(target)
    uuid = harness.uuid("v1")
    if not live:
        harness.must("unmount", target)
    backing = harness.backing_file("v1")
    size = backing.stat().st_size
    backup = harness.base / "backup.img"
    if not live:
        subprocess.run(["cp", "--sparse=always", str(backing), str(backup)], check=True)
    os.truncate(backing, size // 2)
    fault("truncated", harness.raw("mount", harness.dir("p2"), options("v1", size=SIZE)), "truncated")
    if live:
        harness.must("unmount", target)
    assert settled_loops(harness) == []
    # the fixes the message gives: extend it back (the live filesystem rewrote what it had
    # cached), or restore the backup (an idle file lost its second half for good)
    if live:
        os.truncate(backing, size)
    else:
        backup.rename(backing)
    harness.must("mount", target, options("v1", size=SIZE))
    lost = 0 if payload_intact(target) else 1
    FIGURES.add("disk faults", "data lost", lost)
    assert lost == 0 and harness.uuid("v1") == uuid
    finish(harness, "truncated backing file")


def test_lock_files_left_behind_never_block_a_volume(harness: Harness) -> None:
    """Regression, scenario 5 (lock file): a directory in place of the lock file was an internal
    error."""
    target = harness.dir("p1")
    killed = harness.raw("mount", target, options("v1", size=SIZE),
                         env={"FLEXVOL_TEST_HOOKS": "1", "FLEXVOL_TEST_KILL_AT": "loop-attached"})
    assert killed.killed
    lock = harness.root / "locks" / "v1.lock"
    assert lock.exists()
    harness.must("mount", target, options("v1", size=SIZE))
    write_payload(target)
    harness.must("unmount", target)
    lock.write_text("4194303\n")  # a pid that cannot exist
    harness.must("mount", target, options("v1", size=SIZE))
    harness.must("unmount", target)
    lock.unlink()
    lock.mkdir()  # something broken in its place
    fault("lock path broken", harness.raw("mount", target, options("v1", size=SIZE)), "lock")
    lock.rmdir()
    harness.must("mount", target, options("v1", size=SIZE))
    assert payload_intact(target)
    finish(harness, "lock files")
