"""A failed online grow: flagged in the record, shown by ls/show/repair, finished by the next
resize or mount, and never mistaken for a volume at its new size (ext4 without
CAP_SYS_RESOURCE, as on a node whose driver runs unprivileged)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.helpers.cli import flexvol, flexvol_json
from tests.helpers.driver import Driver, options

MiB = 1 << 20
CAP_SYS_RESOURCE = 24


def _online_ext4_growth_possible() -> bool:
    with open("/proc/self/status") as handle:
        line = next(line for line in handle if line.startswith("CapEff:"))
    return bool(int(line.split()[1], 16) >> CAP_SYS_RESOURCE & 1)


needs_no_sys_resource = pytest.mark.skipif(
    _online_ext4_growth_possible(),
    reason="CAP_SYS_RESOURCE is effective here, so online ext4 growth succeeds and there is no "
           "failed grow to observe")


def fs_bytes(path: str) -> int:
    stats = os.statvfs(path)
    return stats.f_blocks * stats.f_frsize


def half_grown(driver: Driver, volume_id: str) -> str:
    """A mounted 64Mi ext4 volume whose `flexvol resize` to 128Mi failed in resize2fs."""
    target = driver.dir("pod")
    driver.ok("mount", target, options(volume_id, size="64Mi", fs="ext4"))
    Path(target, "keep").write_text("before growth")
    result = flexvol("resize", volume_id, "128Mi", root=str(driver.root))
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    return target


@needs_no_sys_resource
def test_failed_online_grow_is_flagged_explained_and_never_shrinks(driver: Driver) -> None:
    """Defect: a failed online grow left a half-grown volume that nothing reported; a retry at
    the old size printed the resize2fs error instead of the never-shrink refusal."""
    target = half_grown(driver, "g1")
    before = fs_bytes(target)
    assert before < 70 * MiB, "the ext4 filesystem must really still be the old size"
    assert driver.backing_file("g1").stat().st_size == 128 * MiB
    # what happened, and what to do
    said = flexvol("resize", "g1", "128Mi", root=str(driver.root)).output
    assert "still 64Mi" in said and "grow it offline" in said and "CAP_SYS_RESOURCE" in said, said
    record = driver.record("g1")
    assert record["size_bytes"] == 64 * MiB, "the record keeps the size the filesystem has"
    assert record["growing"]["to"] == 128 * MiB and record["growing"]["since"]
    assert record["growing"]["error"]
    listed = flexvol_json("ls", root=str(driver.root))
    assert listed[0]["growing"]["to"] == 128 * MiB
    table = flexvol("ls", root=str(driver.root)).output
    assert "fs growing to 128Mi" in table, table
    assert "fs growing to 128Mi" in flexvol("show", "g1", root=str(driver.root)).output
    found = flexvol_json("repair", root=str(driver.root))
    growth = [item for item in found if item["kind"] == "unfinished-growth"]
    assert growth and growth[0]["volume_id"] == "g1" and growth[0]["action"] == "", found
    assert "stop its pods" in growth[0]["detail"]
    # a retry at the old size is a shrink now
    shrink = flexvol("resize", "g1", "64Mi", root=str(driver.root))
    assert shrink.exit_code == 1
    assert "never shrinks" in shrink.output and "resize2fs" not in shrink.output, shrink.output
    assert fs_bytes(target) == before
    driver.ok("unmount", target)


@needs_no_sys_resource
def test_the_next_mount_finishes_a_failed_grow_offline(driver: Driver) -> None:
    """Defect: a failed online grow; the next mount of the unmounted volume grows its filesystem
    offline first and clears the flag."""
    target = half_grown(driver, "g2")
    driver.ok("unmount", target)
    assert not driver.mounts()
    found = [item for item in flexvol_json("repair", root=str(driver.root))
             if item["kind"] == "unfinished-growth"]
    assert found and found[0]["action"].startswith("grow its filesystem offline"), found
    target = driver.dir("pod2")
    driver.ok("mount", target, options("g2", size="64Mi", fs="ext4"))
    assert fs_bytes(target) > 100 * MiB, "the mount must have grown the filesystem first"
    assert Path(target, "keep").read_text() == "before growth"
    record = driver.record("g2")
    assert "growing" not in record and record["size_bytes"] == 128 * MiB
    assert not [item for item in flexvol_json("repair", root=str(driver.root))
                if item["kind"] == "unfinished-growth"]
    driver.ok("unmount", target)


@needs_no_sys_resource
def test_the_next_resize_or_repair_finishes_a_failed_grow(driver: Driver) -> None:
    """Defect: a failed online grow; once unmounted, `resize` to the same size finishes it, and
    `repair --apply` does for another volume."""
    target = half_grown(driver, "g3")
    driver.ok("unmount", target)
    result = flexvol("resize", "g3", "128Mi", root=str(driver.root))
    assert result.exit_code == 0, result.output
    record = driver.record("g3")
    assert "growing" not in record and record["size_bytes"] == 128 * MiB
    assert not driver.loops()
    target = half_grown(driver, "g4")
    driver.ok("unmount", target)
    fixed = flexvol("repair", "--apply", "--json", root=str(driver.root))
    results = [item for item in json.loads(fixed.stdout) if item["kind"] == "unfinished-growth"]
    assert results and results[0]["result"].startswith("done: grew"), fixed.output
    assert "growing" not in driver.record("g4")
    assert not driver.loops()
    target = driver.dir("pod-check")
    driver.ok("mount", target, options("g4", size="64Mi", fs="ext4"))
    assert fs_bytes(target) > 100 * MiB
    driver.ok("unmount", target)


def test_online_xfs_growth_leaves_no_flag(driver: Driver) -> None:
    """Defect guard: a successful (xfs, online) grow clears the flag and the record says the new size."""
    target = driver.dir("pod")
    driver.ok("mount", target, options("x1", size="320Mi", fs="xfs"))
    before = fs_bytes(target)
    result = flexvol("resize", "x1", "448Mi", root=str(driver.root))
    assert result.exit_code == 0, result.output
    assert fs_bytes(target) > before + 100 * MiB
    record = driver.record("x1")
    assert "growing" not in record and record["size_bytes"] == 448 * MiB
    driver.ok("unmount", target)


def test_a_file_grown_without_its_filesystem_before_the_flag_existed_is_found_and_finished(
        driver: Driver) -> None:
    """Defect: a half-grown volume from before the flag (file bigger than its record's size,
    no `growing`) is shown, found by repair, and finished offline by the next mount."""
    target = driver.dir("pod")
    driver.ok("mount", target, options("old", size="64Mi", fs="ext4"))
    Path(target, "keep").write_text("kept")
    driver.ok("unmount", target)
    os.truncate(driver.backing_file("old"), 128 * MiB)
    assert "growing" not in driver.record("old")
    assert flexvol_json("ls", root=str(driver.root))[0]["growing"]["to"] == 128 * MiB
    found = [item for item in flexvol_json("repair", root=str(driver.root))
             if item["kind"] == "unfinished-growth"]
    assert found and found[0]["action"], found
    driver.ok("mount", target, options("old", size="64Mi", fs="ext4"))
    assert fs_bytes(target) > 100 * MiB and Path(target, "keep").read_text() == "kept"
    assert driver.record("old")["size_bytes"] == 128 * MiB
    assert flexvol_json("ls", root=str(driver.root))[0]["growing"] is None
    driver.ok("unmount", target)
