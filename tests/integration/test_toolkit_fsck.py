"""flexvol fsck on real loop devices: clean, damaged on purpose, repaired, refused while in use.

Each damage is made in the test's own backing file while its volume is idle.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from flexvol.core import kernel, state
from flexvol.core.config import Config
from flexvol.toolkit import fsck
from tests.helpers.cli import flexvol
from tests.helpers.driver import Driver, options


def create(driver: Driver, volume_id: str, size: str = "64Mi", fs: str = "ext4") -> Path:
    result = flexvol("create", volume_id, "--size", size, "--fs", fs, "--thin", root=str(driver.root))
    assert result.exit_code == 0, result.output
    return driver.backing_file(volume_id)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def damage_root_inode(image: Path) -> None:
    """Overwrite inode 2 (the root dir) in the first inode table with a pattern (dd conv=notrunc)."""
    dump = subprocess.run(["dumpe2fs", str(image)], capture_output=True, text=True, check=True).stdout
    block = int(re.search(r"^Block size:\s+(\d+)", dump, re.M).group(1))
    inode = int(re.search(r"^Inode size:\s+(\d+)", dump, re.M).group(1))
    table = int(re.search(r"Inode table at (\d+)", dump).group(1))
    pattern = image.parent / "pattern.bin"
    pattern.write_bytes(b"\xa5" * inode)
    try:
        subprocess.run(["dd", f"if={pattern}", f"of={image}", "bs=1", f"seek={table * block + inode}",
                        "conv=notrunc", "status=none"], check=True)
    finally:
        pattern.unlink()


def no_loop_of(driver: Driver) -> None:
    assert not driver.loops(), f"fsck left a loop device: {driver.loops()}"


def test_fsck_reports_a_clean_volume_clean_and_detaches_its_loop_device(driver: Driver) -> None:
    create(driver, "v1")
    result = flexvol("fsck", "v1", root=str(driver.root))
    assert result.exit_code == 0, result.output
    assert "e2fsck -f -n -C 0 /dev/loop" in result.output
    assert "Pass 5" in result.output
    assert re.search(r"v1 \(ext4\): clean \(e2fsck exit 0\); /dev/loop\d+ detached", result.output)
    assert "Traceback" not in result.output
    no_loop_of(driver)


@pytest.mark.parametrize(("fs", "size", "tool"), [("xfs", "320Mi", "xfs_repair -n"),
                                                   ("btrfs", "128Mi", "btrfs check --readonly")])
def test_fsck_checks_xfs_and_btrfs_with_their_own_checker(driver: Driver, fs: str, size: str,
                                                          tool: str) -> None:
    create(driver, "v1", size=size, fs=fs)
    result = flexvol("fsck", "v1", "--json", root=str(driver.root))
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["verdict"] == "clean" and found["exit_code"] == 0 and found["detached"]
    assert found["runs"][0]["argv"].startswith(tool)
    no_loop_of(driver)


def test_fsck_finds_a_damaged_filesystem_without_writing_to_it(driver: Driver) -> None:
    """A check reports the damage, exits non-zero, and opens the filesystem read-only."""
    image = create(driver, "v1")
    damage_root_inode(image)
    before = digest(image)
    result = flexvol("fsck", "v1", root=str(driver.root))
    assert result.exit_code == 3, result.output
    verdict = re.search(r"v1 \(ext4\): errors found \(e2fsck exit (\d+)\)", result.output)
    assert verdict and int(verdict.group(1)) & 4, result.output  # e2fsck(8): 4, errors left
    assert "'flexvol fsck v1 --repair' fixes what is safe" in result.output
    assert digest(image) == before, "a check without --repair changed the backing file"
    no_loop_of(driver)


def test_fsck_repair_fixes_what_is_safe_and_checks_again(driver: Driver) -> None:
    image = create(driver, "v1")
    # A wrong free-blocks count in a group descriptor: e2fsck -p fixes it without a person.
    subprocess.run(["debugfs", "-w", "-R", "set_bg 0 free_blocks_count 5", str(image)],
                   capture_output=True, check=True)
    assert flexvol("fsck", "v1", root=str(driver.root)).exit_code == 3
    result = flexvol("fsck", "v1", "--repair", "--json", root=str(driver.root))
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["verdict"] == "repaired"
    assert [run["argv"].split()[:3] for run in found["runs"]] == [
        ["e2fsck", "-f", "-n"], ["e2fsck", "-f", "-p"], ["e2fsck", "-f", "-n"]]
    assert [run["exit_code"] for run in found["runs"]] == [4, 1, 0]
    assert subprocess.run(["e2fsck", "-f", "-n", str(image)], capture_output=True).returncode == 0
    no_loop_of(driver)


def test_fsck_repair_leaves_to_a_person_what_could_lose_data(driver: Driver) -> None:
    image = create(driver, "v1")
    damage_root_inode(image)
    result = flexvol("fsck", "v1", "--repair", root=str(driver.root))
    assert result.exit_code == 3, result.output
    assert re.search(r"v1 \(ext4\): errors left \(e2fsck exit \d+, \d+, \d+\)", result.output), result.output
    assert "e2fsck -f -y" in result.output and "cp --sparse=always" in result.output
    no_loop_of(driver)


def test_fsck_refuses_a_mounted_volume_and_leaves_its_mount(driver: Driver) -> None:
    target = driver.dir("pod")
    driver.ok("mount", target, options("v1"))
    loops = driver.loops()
    result = flexvol("fsck", "v1", root=str(driver.root))
    assert result.exit_code == 1, result.output
    assert "volume v1 is in use: mounted at " + target in result.output
    assert "Traceback" not in result.output
    assert driver.loops() == loops
    assert kernel.mounts_at(target), "fsck unmounted a volume in use"
    driver.ok("unmount", target)
    no_loop_of(driver)


def test_fsck_refuses_a_volume_attached_outside_flexvol(driver: Driver) -> None:
    image = create(driver, "v1")
    device = subprocess.run(["losetup", "--find", "--show", str(image)], capture_output=True, text=True,
                            check=True).stdout.strip()
    try:
        result = flexvol("fsck", "v1", root=str(driver.root))
        assert result.exit_code == 1, result.output
        assert f"attached as {device}" in result.output
        assert "flexvol repair --apply" in result.output
        assert kernel.loop_backing_file(device), "fsck detached a device it did not attach"
    finally:
        subprocess.run(["losetup", "--detach", device], check=False)


def test_fsck_of_a_missing_volume_is_a_clear_error(driver: Driver) -> None:
    create(driver, "v1")
    result = flexvol("fsck", "nope", root=str(driver.root))
    assert result.exit_code == 1
    assert "volume nope does not exist" in result.output
    assert "Traceback" not in result.output


def test_the_checker_inherits_the_volume_lock_and_nothing_else_keeps_it(driver: Driver) -> None:
    """A checker outliving a killed `flexvol fsck` must keep the driver away from the volume."""
    config = Config(str(driver.root))
    state.ensure_dirs(config)
    with state.VolumeLock(config, "v1", wait=1) as lock:
        assert lock.fd is not None
        code, lines = fsck.run_checker(["ls", "-l", f"/proc/self/fd/{lock.fd}"], on_line=lambda line: None,
                                       on_fraction=lambda fraction: None, progress=lambda line: None,
                                       keep_fds=(lock.fd,))
        assert code == 0, lines
        assert any(line.endswith(config.lock_path("v1")) for line in lines), lines
        assert not os.get_inheritable(lock.fd), "the lock stays inheritable after the checker"
