"""Regression for the defect "the capacity budget counts the pool's size, not its free space".

On a 320M pool already holding 200M of other data, a 250Mi volume mounted with Success; writing
into it failed inside the pod with EIO and damaged its filesystem. Here the pool is a small
tmpfs mounted as the test's data root (removed by the driver fixture's cleanup, volume mounts
and loop devices first), so "other data" is a plain file beside the volumes.
"""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from flexvol.core.config import Config
from flexvol.toolkit import doctor
from tests.helpers.cli import flexvol, flexvol_json
from tests.helpers.driver import Driver, options

MiB = 1 << 20


def small_pool(driver: Driver, size: str) -> None:
    driver.root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "flexvol-test-pool",
                    str(driver.root)], check=True)


def other_data(path: Path, size: int | None = None) -> None:
    """Write `size` bytes (None: until the filesystem is full) of data that is not a volume."""
    chunk = b"\xa5" * MiB
    written = 0
    with open(path, "ab") as handle:
        try:
            while size is None or written < size:
                written += handle.write(chunk[: MiB if size is None else min(MiB, size - written)])
                handle.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC and size is None
    try:
        os.truncate(path, os.stat(path).st_size)
    except OSError:
        pass


def human(message: str) -> None:
    """Figures for people: binary units, no raw byte counts, no Ki."""
    figures = re.sub(r"/\S*", "", message)  # paths carry the test dir's pid
    assert not re.search(r"\d{5,}", figures), message
    assert "Ki" not in message, message


def fsck_clean(backing: Path) -> None:
    done = subprocess.run(["e2fsck", "-fn", str(backing)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_volume_larger_than_the_real_free_space_is_refused_with_the_numbers(driver: Driver) -> None:
    small_pool(driver, "320m")
    driver.ok("init")
    other_data(driver.root / "images-and-logs", 200 * MiB)
    refused = driver.fail("mount", driver.dir("pod"), options("v2", size="250Mi"))
    human(refused.message)
    assert "volume v2 at 250Mi" in refused.message and "free space" in refused.message
    assert "short" in refused.message and "ask for at most" in refused.message
    assert not driver.backing_file("v2").exists() and not driver.loops() and not driver.mounts()[1:]
    # what is really there is still given, and then promised: a second one no longer fits
    driver.ok("mount", driver.dir("a"), options("a", size="64Mi", allocation="thin"))
    second = driver.fail("mount", driver.dir("b"), options("b", size="64Mi", allocation="thin"))
    assert "thin volumes were promised" in second.message
    human(second.message)
    found = flexvol_json("capacity", root=str(driver.root))
    assert found["available_bytes"] < 64 * MiB
    assert found["available_bytes"] == max(0, found["pool_free_bytes"] - found["promised_bytes"])
    driver.ok("unmount", driver.dir("a"))


def test_toolkit_create_and_resize_use_the_same_figure(driver: Driver) -> None:
    small_pool(driver, "160m")
    other_data(driver.root / "other", 60 * MiB)
    created = flexvol("create", "big", "--size", "128Mi", root=str(driver.root))
    assert created.exit_code == 1 and "free space" in created.output, created.output
    assert "Traceback" not in created.output
    human(created.output)
    assert flexvol("create", "v1", "--size", "32Mi", "--thin", root=str(driver.root)).exit_code == 0
    assert driver.record("v1")["allocation"] == "thin"
    grown = flexvol("resize", "v1", "128Mi", root=str(driver.root))
    assert grown.exit_code == 1 and "growing volume v1 from 32Mi to 128Mi" in grown.output, grown.output
    assert driver.backing_file("v1").stat().st_size == 32 * MiB


def test_thick_volume_reserves_its_blocks_and_writes_while_the_pool_is_full(driver: Driver) -> None:
    small_pool(driver, "200m")
    target = driver.dir("pod")
    driver.ok("mount", target, options("t", size="64Mi"))  # thick: the default
    backing = driver.backing_file("t")
    assert backing.stat().st_blocks * 512 >= 64 * MiB
    record = driver.record("t")
    assert record["allocation"] == "thick" and record["reserved"] is True
    other_data(driver.root / "filler")          # the pool is now full
    pool = os.statvfs(driver.root)
    assert pool.f_bavail * pool.f_frsize < MiB
    room = os.statvfs(target)
    payload = os.urandom(MiB)
    with open(Path(target, "data.bin"), "wb") as handle:
        for _ in range(room.f_bavail * room.f_frsize // MiB - 1):
            handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    assert Path(target, "data.bin").stat().st_size >= 48 * MiB
    driver.ok("unmount", target)
    fsck_clean(backing)


def test_thick_volume_is_refused_up_front_when_the_pool_cannot_hold_it(driver: Driver) -> None:
    small_pool(driver, "100m")
    other_data(driver.root / "other", 60 * MiB)
    refused = driver.fail("mount", driver.dir("pod"), options("t", size="64Mi", allocation="thick"))
    assert "free space" in refused.message
    human(refused.message)
    assert not driver.backing_file("t").exists() and not driver.loops()
    bad = driver.fail("mount", driver.dir("pod"), options("t", size="16Mi", allocation="fat"))
    assert "option 'allocation' must be 'thin' or 'thick'" in bad.message


def test_thick_volume_grows_reserved_and_toolkit_makes_thick_ones(driver: Driver) -> None:
    created = flexvol("create", "t", "--size", "32Mi", root=str(driver.root))  # thick: the default
    assert created.exit_code == 0 and "thick" in created.output, created.output
    assert driver.record("t")["allocation"] == "thick"
    assert driver.backing_file("t").stat().st_blocks * 512 >= 32 * MiB
    target = driver.dir("pod")
    driver.ok("mount", target, options("t", size="32Mi"))
    Path(target, "keep").write_text("before growth")
    driver.ok("unmount", target)
    # offline: online ext4 growth needs CAP_SYS_RESOURCE, which some test machines lack
    grown = flexvol("resize", "t", "48Mi", root=str(driver.root))
    assert grown.exit_code == 0, grown.output
    assert driver.backing_file("t").stat().st_blocks * 512 >= 48 * MiB
    fsck_clean(driver.backing_file("t"))
    driver.ok("mount", target, options("t", size="32Mi"))
    assert Path(target, "keep").read_text() == "before growth"
    driver.ok("unmount", target)


def test_doctor_fails_a_pool_that_cannot_back_its_thin_volumes(driver: Driver) -> None:
    small_pool(driver, "128m")
    target = driver.dir("pod")
    driver.ok("mount", target, options("v1", size="64Mi", allocation="thin"))
    config = Config(str(driver.root))
    assert doctor.check_space(config)[0].status != doctor.FAIL  # WARN: a pool under 1Gi
    other_data(driver.root / "filler", 80 * MiB)
    check = doctor.check_space(config)[0]
    assert check.status == doctor.FAIL, check
    assert "more than is free" in check.detail and "I/O errors" in check.detail
    human(check.detail)
    driver.ok("unmount", target)


def test_a_thick_volume_whose_reservation_fails_is_rolled_back(
        driver: Driver, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pool filled between the up-front check and fallocate (another writer): the mount
    fails with the figures and leaves no file, record, loop device or mount behind."""
    from flexvol.core import backing, operations
    from flexvol.core.errors import Refused
    from flexvol.core.journal import CallInfo
    from flexvol.core.options import parse_spec

    def pool_filled_meanwhile(path: str, size: int, progress: object = None) -> None:
        raise Refused(f"reserving the blocks of {path} failed: No space left on device",
                      "free space on the pool filesystem, or make the volume thin")

    monkeypatch.setattr(backing, "reserve_blocks", pool_filled_meanwhile)
    target = driver.dir("pod")
    call = CallInfo("mount")
    with pytest.raises(Refused, match="No space left"):
        operations.mount(Config(str(driver.root)), target, parse_spec(json.loads(options("t", size="32Mi"))),
                         call)
    assert not driver.backing_file("t").exists()
    assert not (driver.root / "records" / "t.json").exists()
    assert driver.loops() == [] and driver.mounts() == []
    assert any("remove new backing file" in note for note in call.notes), call.notes
