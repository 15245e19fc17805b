"""Snapshots, restores and clones on real loop devices (docs/layout.md section 8)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers.cli import flexvol
from tests.helpers.driver import Driver, options

MiB = 1 << 20


def ok(driver: Driver, *args: str) -> str:
    result = flexvol(*args, root=str(driver.root))
    assert result.exit_code == 0, result.output
    return result.stdout


def as_json(driver: Driver, *args: str) -> object:
    return json.loads(ok(driver, *args, "-o", "json"))


def digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_file(path: str | Path, size: int) -> str:
    """Write `size` random bytes durably; their checksum."""
    data = os.urandom(size)
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return hashlib.sha256(data).hexdigest()


def blkid_uuid(path: str | Path) -> str:
    return subprocess.run(["blkid", "-p", "-o", "value", "-s", "UUID", str(path)],
                          capture_output=True, text=True, check=True).stdout.strip()


def snapshot_files(driver: Driver) -> list[str]:
    try:
        return sorted(os.listdir(driver.root / "snapshots"))
    except FileNotFoundError:
        return []


class Writer:
    """A pod writing to its volume all along: one fsynced record a millisecond or so."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.count = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with open(self.path, "ab") as handle:
            while not self.stop.is_set():
                handle.write(f"{self.count:08d}\n".encode())
                handle.flush()
                os.fsync(handle.fileno())
                self.count += 1

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the writer is stuck: its volume was left frozen"


def test_snapshot_of_a_mounted_volume_under_a_writer_restores_that_moment(driver: Driver) -> None:
    source = driver.dir("pod")
    driver.ok("mount", source, options("v1", size="128Mi"))
    before = write_file(Path(source, "before"), 3 * MiB)
    with Writer(os.path.join(source, "log")) as writer:
        while writer.count < 50:
            time.sleep(0.01)
        ok(driver, "snapshot", "create", "v1", "s1")
        # the volume stayed mounted and writable: the writer goes on past the snapshot
        assert [m.mount_point for m in driver.mounts()] == [source]
        taken = writer.count
        deadline = time.monotonic() + 10
        while writer.count < taken + 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert writer.count >= taken + 50
    after = write_file(Path(source, "after"), MiB)
    assert not (driver.root / "frozen").exists() or os.listdir(driver.root / "frozen") == []
    [row] = as_json(driver, "snapshot", "ls")  # type: ignore[misc]
    assert row["name"] == "s1" and row["source_volume"] == "v1" and row["frozen"] is True
    assert row["method"] == "copy"  # /tmp is ext4: no reflink
    snap = driver.root / "snapshots" / "s1.img"
    # frozen means clean: the copy needs no journal replay nor repair
    assert subprocess.run(["e2fsck", "-fn", str(snap)], capture_output=True).returncode == 0
    # sparse: it holds what the volume holds, not its size
    assert os.stat(snap).st_blocks * 512 < 64 * MiB
    ok(driver, "create", "r1", "--from-snapshot", "s1")
    restored = driver.dir("restored")
    driver.ok("mount", restored, options("r1", size="128Mi"))
    assert digest(Path(restored, "before")) == before
    assert not Path(restored, "after").exists()
    lines = Path(restored, "log").read_text().splitlines()
    # the log as of one instant: whole records in order, none torn
    assert lines == [f"{index:08d}" for index in range(len(lines))] and len(lines) >= 50
    assert digest(Path(source, "after")) == after
    record = driver.record("r1")
    assert record["formatted"]["fs_type"] == "ext4" and "restoring" not in record
    assert record["restored_from"] == {"from_snapshot": "s1", "method": "copy"}
    driver.ok("unmount", restored)
    driver.ok("unmount", source)


def test_clone_of_a_clone_grown_on_request(driver: Driver) -> None:
    target = driver.dir("pod")
    driver.ok("mount", target, options("v1", size="64Mi"))
    data = write_file(Path(target, "data"), 2 * MiB)
    driver.ok("unmount", target)
    ok(driver, "create", "c1", "--from-volume", "v1", "--thin")
    ok(driver, "create", "c2", "--from-volume", "c1", "--size", "96Mi")
    assert os.stat(driver.backing_file("c2")).st_size == 96 * MiB
    assert driver.record("c2")["restored_from"]["from_volume"] == "c1"
    assert driver.record("c2").get("reserved") is True  # thick, the default: blocks reserved
    clone = driver.dir("clone")
    driver.ok("mount", clone, options("c2", size="96Mi"))
    assert digest(Path(clone, "data")) == data
    stats = os.statvfs(clone)
    assert stats.f_blocks * stats.f_frsize > 80 * MiB  # the filesystem grew with the file
    driver.ok("unmount", clone)
    # a repeat of the same clone is answered with the volume made; another source is refused
    ok(driver, "create", "c2", "--from-volume", "c1")
    refused = flexvol("create", "c2", "--from-volume", "v1", root=str(driver.root))
    assert refused.exit_code == 1 and "already exists" in refused.output
    assert driver.loops() == []


def test_deleting_a_volume_keeps_its_snapshots(driver: Driver) -> None:
    target = driver.dir("pod")
    driver.ok("mount", target, options("v1"))
    data = write_file(Path(target, "data"), MiB)
    ok(driver, "snapshot", "create", "v1", "s1")
    driver.ok("unmount", target)
    ok(driver, "delete", "v1", "--yes")
    assert not driver.backing_file("v1").exists()
    [row] = as_json(driver, "snapshot", "ls")  # type: ignore[misc]
    assert row["source_exists"] is False
    assert "v1 (deleted)" in ok(driver, "snapshot", "ls")
    ok(driver, "create", "v1", "--from-snapshot", "s1")
    driver.ok("mount", target, options("v1"))
    assert digest(Path(target, "data")) == data
    driver.ok("unmount", target)
    ok(driver, "snapshot", "delete", "s1", "--yes")
    assert snapshot_files(driver) == []
    missing = flexvol("snapshot", "delete", "s1", "--yes", root=str(driver.root))
    assert missing.exit_code == 1 and "does not exist" in missing.output
    assert "Traceback" not in missing.output


def test_ls_and_capacity_show_what_snapshots_hold(driver: Driver) -> None:
    target = driver.dir("pod")
    driver.ok("mount", target, options("v1", size="64Mi", allocation="thin"))
    write_file(Path(target, "data"), 8 * MiB)
    ok(driver, "snapshot", "create", "v1", "s1")
    ok(driver, "snapshot", "create", "v1", "s2")
    driver.ok("unmount", target)
    [volume] = as_json(driver, "ls")  # type: ignore[misc]
    held = sum(os.stat(driver.root / "snapshots" / f"{name}.img").st_blocks * 512 for name in ("s1", "s2"))
    assert volume["snapshots"] == 2 and volume["snapshot_bytes"] == held >= 16 * MiB
    assert "SNAPSHOTS" in ok(driver, "ls").splitlines()[0]
    pool = as_json(driver, "capacity")
    assert pool["snapshot_bytes"] == held  # type: ignore[index]
    assert pool["snapshot_shared_bytes"] == 0  # type: ignore[index]  # copies: already used space
    shown = ok(driver, "snapshot", "show", "s1")
    assert "Volume:" in shown and "v1" in shown and "copy" in shown


def test_bad_snapshot_input_is_a_message_not_a_traceback(driver: Driver) -> None:
    cases = [(("snapshot", "create", "nope", "s1"), "does not exist"),
             (("snapshot", "create", "v1", "Bad/Name"), "snapshot name"),
             (("create", "r1", "--from-snapshot", "nope"), "does not exist"),
             (("create", "r1", "--from-snapshot", "a", "--from-volume", "b"), "not both"),
             (("create", "r1", "--from-volume", "r1"), "clone of itself")]
    for args, said in cases:
        result = flexvol(*args, root=str(driver.root))
        assert result.exit_code in (1, 2) and said in result.output, (args, result.output)
        assert "Traceback" not in result.output


@pytest.mark.parametrize("fs,size", [("xfs", "320Mi"), ("btrfs", "128Mi")])
def test_restored_volume_mounts_beside_its_source(driver: Driver, fs: str, size: str) -> None:
    """xfs refuses a second filesystem with a mounted one's UUID; btrfs would take the copy
    for another device of the same filesystem: the copy gets a new UUID."""
    source = driver.dir("pod")
    driver.ok("mount", source, options("v1", size=size, fs=fs))
    data = write_file(Path(source, "data"), MiB)
    ok(driver, "snapshot", "create", "v1", "s1")
    ok(driver, "create", "r1", "--from-snapshot", "s1")
    ok(driver, "create", "c1", "--from-volume", "v1")  # clone of a mounted volume, frozen for it
    uuids = {blkid_uuid(driver.backing_file(volume)) for volume in ("v1", "r1", "c1")}
    assert len(uuids) == 3
    for volume in ("r1", "c1"):
        assert driver.record(volume)["formatted"]["uuid"] == blkid_uuid(driver.backing_file(volume))
        beside = driver.dir(volume)
        driver.ok("mount", beside, options(volume, size=size, fs=fs))
        assert digest(Path(beside, "data")) == data
        assert {m.mount_point for m in driver.mounts()} >= {source, beside}
        Path(beside, "more").write_text("x")
        driver.ok("unmount", beside)
    Path(source, "still-writable").write_text("yes")
    driver.ok("unmount", source)


def test_a_mount_of_a_volume_still_being_restored_is_refused(driver: Driver) -> None:
    """The record marked `restoring` must keep the driver from making a blank volume there."""
    driver.ok("mount", driver.dir("pod"), options("v1"))
    ok(driver, "snapshot", "create", "v1", "s1")
    driver.ok("unmount", driver.dir("pod"))
    record = {"schema": 1, "volume_id": "r1", "size_bytes": 64 * MiB, "fs_type": "ext4",
              "created_at": "2026-12-06T00:00:00Z", "formatted": None, "mkfs_started": None,
              "loop_device": None, "pv_names": [], "restoring": {"from_snapshot": "s1", "at": ""}}
    (driver.root / "records" / "r1.json").write_text(json.dumps(record))
    refused = driver.fail("mount", driver.dir("r"), options("r1"))
    assert "snapshot s1" in refused.message and not driver.backing_file("r1").exists()
    ok(driver, "create", "r1", "--from-snapshot", "s1")  # the retry finishes it
    driver.ok("mount", driver.dir("r"), options("r1"))
    driver.ok("unmount", driver.dir("r"))


# ---- the reflink path: a data root on xfs made with reflink=1 -------------------------------------

@contextmanager
def xfs_data_root(driver: Driver) -> Iterator[None]:
    """Mount an xfs with reflink=1, made from a file in the test's own dir, as the data root."""
    image = driver.base / "xfs-root.img"
    with open(image, "wb") as handle:
        handle.truncate(1536 * MiB)
    subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(image)], check=True)
    driver.root.mkdir()
    subprocess.run(["mount", "-o", "loop", str(image), str(driver.root)], check=True)
    try:
        yield
    finally:
        device = next((m.source for m in driver.mounts() if m.mount_point == str(driver.root)), "")
        for mount in reversed(driver.mounts()):
            if mount.mount_point != str(driver.root):
                subprocess.run(["umount", mount.mount_point], check=False)
        for loop in driver.loops():
            subprocess.run(["losetup", "-d", loop], check=False)
        subprocess.run(["umount", str(driver.root)], check=False)
        if device.startswith("/dev/loop"):
            subprocess.run(["losetup", "-d", device], capture_output=True, check=False)


def test_reflink_snapshot_is_instant_and_takes_no_space(driver: Driver) -> None:
    with xfs_data_root(driver):
        source = driver.dir("pod")
        driver.ok("mount", source, options("v1", size="512Mi"))
        data = write_file(Path(source, "data"), 100 * MiB)
        free_before = os.statvfs(driver.root).f_bavail * os.statvfs(driver.root).f_frsize
        started = time.monotonic()
        ok(driver, "snapshot", "create", "v1", "s1")
        took = time.monotonic() - started
        free_after = os.statvfs(driver.root).f_bavail * os.statvfs(driver.root).f_frsize
        [row] = as_json(driver, "snapshot", "ls")  # type: ignore[misc]
        assert row["method"] == "reflink" and row["frozen"] is True
        assert free_before - free_after < 8 * MiB, (free_before, free_after)
        assert took < 5, took
        pool = as_json(driver, "capacity")
        # shared blocks: free now, but the volume's next write to each takes one
        assert pool["snapshot_shared_bytes"] >= 100 * MiB  # type: ignore[index]
        Path(source, "after").write_text("after")
        ok(driver, "create", "r1", "--from-snapshot", "s1", "--thin")
        assert driver.record("r1")["restored_from"]["method"] == "reflink"
        restored = driver.dir("restored")
        driver.ok("mount", restored, options("r1", size="512Mi"))
        assert digest(Path(restored, "data")) == data and not Path(restored, "after").exists()
        driver.ok("unmount", restored)
        driver.ok("unmount", source)
