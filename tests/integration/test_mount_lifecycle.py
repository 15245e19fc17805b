"""mount / unmount on real loop devices: the non-attachable lifecycle
(docs/flexvolume.md sections 5, 9, 10)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.helpers.driver import Driver, is_mount_point, options


def test_init_reports_deliberate_capabilities(driver: Driver) -> None:
    reply = driver.ok("init").reply
    assert reply["capabilities"] == {"attach": False, "selinuxRelabel": True, "fsGroup": False,
                                     "supportsMetrics": True, "requiresFSResize": True}


def test_init_writes_nothing(driver: Driver) -> None:
    driver.ok("init")
    assert not driver.root.exists()


def test_mount_creates_sparse_file_formats_and_mounts(driver: Driver) -> None:
    target = driver.dir("pod1")
    # thin: thick, the default, reserves every block (test_pool_capacity.py)
    driver.ok("mount", target, options("v1", size="64Mi", allocation="thin"))
    mounts = [m for m in driver.mounts() if m.mount_point == target]
    assert len(mounts) == 1
    assert mounts[0].fs_type == "ext4"
    assert "nosuid" in mounts[0].options and "nodev" in mounts[0].options
    assert not mounts[0].read_only
    backing = driver.backing_file("v1")
    assert backing.stat().st_size == 64 << 20
    assert backing.stat().st_blocks * 512 < 64 << 20, "backing file should be sparse"
    assert oct(backing.stat().st_mode & 0o777) == oct(0o600)
    assert len(driver.loops()) == 1
    record = driver.record("v1")
    assert record["formatted"]["fs_type"] == "ext4"
    assert record["formatted"]["uuid"]


def test_repeated_mount_adds_no_second_mount_or_loop(driver: Driver) -> None:
    target = driver.dir("pod1")
    for _ in range(3):
        driver.ok("mount", target, options("v1"))
    assert [m.mount_point for m in driver.mounts()] == [target]
    assert len(driver.loops()) == 1


def test_data_survives_unmount_and_remount(driver: Driver) -> None:
    first, second = driver.dir("a"), driver.dir("b")
    driver.ok("mount", first, options("v1"))
    Path(first, "data.bin").write_bytes(b"payload" * 1000)
    uuid = driver.record("v1")["formatted"]["uuid"]
    driver.ok("unmount", first)
    assert not driver.loops()
    driver.ok("mount", second, options("v1"))
    assert Path(second, "data.bin").read_bytes() == b"payload" * 1000
    assert driver.record("v1")["formatted"]["uuid"] == uuid, "volume must never be reformatted"
    driver.ok("unmount", second)


def test_unmount_leaves_empty_unmounted_dir_and_frees_loop(driver: Driver) -> None:
    target = driver.dir("pod1")
    driver.ok("mount", target, options("v1"))
    driver.ok("unmount", target)
    assert not is_mount_point(target)
    assert os.listdir(target) == []
    assert driver.loops() == []
    # repeated, and on a directory that never existed
    driver.ok("unmount", target)
    driver.ok("unmount", driver.dir("never-made"))


def test_two_pod_dirs_share_one_loop_device_until_the_last_unmount(driver: Driver) -> None:
    first, second = driver.dir("a"), driver.dir("b")
    driver.ok("mount", first, options("v1"))
    driver.ok("mount", second, options("v1"))
    assert len(driver.loops()) == 1
    Path(first, "shared").write_text("x")
    assert Path(second, "shared").read_text() == "x"
    driver.ok("unmount", first)
    assert len(driver.loops()) == 1, "loop device must stay while a mount uses it"
    driver.ok("unmount", second)
    assert driver.loops() == []


def test_read_only_mount_never_formats_and_is_read_only(driver: Driver) -> None:
    target = driver.dir("ro")
    result = driver.fail("mount", target, options("fresh", mode="ro"))
    assert "read-only" in result.message
    assert not driver.backing_file("fresh").exists(), "a ro mount must not create a volume"
    assert driver.loops() == [] and driver.mounts() == []
    rw = driver.dir("rw")
    driver.ok("mount", rw, options("v1"))
    Path(rw, "f").write_text("kept")
    driver.ok("unmount", rw)
    driver.ok("mount", target, options("v1", mode="ro"))
    mount = next(m for m in driver.mounts() if m.mount_point == target)
    assert mount.read_only
    assert Path(target, "f").read_text() == "kept"
    driver.ok("unmount", target)


def test_rw_beside_ro_is_refused_both_ways(driver: Driver) -> None:
    rw, ro = driver.dir("rw"), driver.dir("ro")
    driver.ok("mount", rw, options("v1"))
    driver.fail("mount", ro, options("v1", mode="ro"))
    driver.ok("unmount", rw)
    driver.ok("mount", ro, options("v1", mode="ro"))
    result = driver.fail("mount", rw, options("v1"))
    assert "read-only" in result.message
    assert not is_mount_point(rw)
    driver.ok("unmount", ro)
    assert driver.loops() == []


def test_other_fs_type_is_refused_and_data_untouched(driver: Driver) -> None:
    target = driver.dir("a")
    driver.ok("mount", target, options("v1", size="400Mi"))
    Path(target, "keep").write_text("precious")
    uuid = driver.record("v1")["formatted"]["uuid"]
    driver.ok("unmount", target)
    result = driver.fail("mount", target, options("v1", size="400Mi", fs="xfs"))
    assert "already holds an ext4 filesystem" in result.message
    assert driver.loops() == [] and driver.mounts() == []
    driver.ok("mount", target, options("v1", size="400Mi", fs="ext4"))
    assert Path(target, "keep").read_text() == "precious"
    assert driver.record("v1")["formatted"]["uuid"] == uuid
    driver.ok("unmount", target)


def test_written_file_without_signature_is_never_formatted(driver: Driver) -> None:
    """Unknown is not blank: a file with data but no signature is refused, not formatted."""
    driver.root.joinpath("volumes").mkdir(parents=True)
    backing = driver.backing_file("v1")
    backing.write_bytes(b"\x01" * 4096 + b"\0" * (16 << 20))
    before = backing.read_bytes()
    result = driver.fail("mount", driver.dir("a"), options("v1"))
    assert "refusing to format" in result.message
    assert backing.read_bytes() == before
    assert driver.loops() == [] and driver.mounts() == []


def test_failed_mount_rolls_back_file_loop_and_mount(driver: Driver) -> None:
    """A mount that fails after creating the file and loop device leaves none of it behind."""
    target = driver.dir("a")
    # A regular file where the directory should be makes the last step fail.
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    Path(target).write_text("not a directory")
    driver.fail("mount", target, options("v1"))
    assert not driver.backing_file("v1").exists()
    assert not (driver.root / "records" / "v1.json").exists()
    assert driver.loops() == [] and driver.mounts() == []


def test_mount_over_a_foreign_mount_point_is_refused(driver: Driver) -> None:
    first = driver.dir("a")
    driver.ok("mount", first, options("v1"))
    result = driver.fail("mount", first, options("v2"))
    assert "already a mount point" in result.message
    assert not driver.backing_file("v2").exists()
    driver.ok("unmount", first)


def test_fs_group_applied_to_volume_root_without_recursion(driver: Driver) -> None:
    target = driver.dir("a")
    driver.ok("mount", target, options("v1", **{"kubernetes.io/mounterArgs.FsGroup": "2000"}))
    info = os.stat(target)
    assert info.st_gid == 2000
    assert info.st_mode & 0o2070 == 0o2070
    driver.ok("unmount", target)
    legacy = driver.dir("b")
    driver.ok("mount", legacy, options("v2", **{"kubernetes.io/fsGroup": "3000"}))
    assert os.stat(legacy).st_gid == 3000
    driver.ok("unmount", legacy)


def test_a_pod_with_another_fs_group_gets_the_files_earlier_pods_wrote(driver: Driver,
                                                                       tmp_path: Path) -> None:
    """Regression: only the volume's root changed group, so a second pod with a different
    fsGroup could not write the files the first pod made (Kubernetes' storage suite,
    fsGroupChangePolicy). Now the tree follows the root, never through a symlink, and a
    remount with the same group walks nothing."""
    outside = tmp_path / "host-file"
    outside.write_text("host")
    outside.chmod(0o600)
    first = driver.dir("a")
    driver.ok("mount", first, options("v1", **{"kubernetes.io/mounterArgs.FsGroup": "2000"}))
    os.makedirs(f"{first}/d/e")
    Path(f"{first}/d/e/f").write_text("data")
    os.chmod(f"{first}/d/e/f", 0o600)
    os.chown(f"{first}/d/e/f", 1000, 2000)
    os.symlink(outside, f"{first}/link")
    driver.ok("unmount", first)

    second = driver.dir("b")
    driver.ok("mount", second, options("v1", **{"kubernetes.io/mounterArgs.FsGroup": "3000"}))
    for name, bits in (("d", 0o2770), ("d/e", 0o2770), ("d/e/f", 0o660), ("lost+found", 0o2770)):
        info = os.lstat(f"{second}/{name}")
        assert info.st_gid == 3000, name
        assert info.st_mode & bits == bits, (name, oct(info.st_mode))
    assert os.lstat(f"{second}/d/e/f").st_uid == 1000
    assert os.lstat(f"{second}/link").st_gid == 3000
    assert (outside.stat().st_gid, outside.stat().st_mode & 0o7777) == (0, 0o600)
    assert os.stat(second).st_gid == 3000
    # Same group again: the root says the tree is done; a file changed meanwhile is left alone.
    os.chown(f"{second}/d/e/f", 1000, 0)
    driver.ok("unmount", second)
    driver.ok("mount", first, options("v1", **{"kubernetes.io/mounterArgs.FsGroup": "3000"}))
    assert os.lstat(f"{first}/d/e/f").st_gid == 0
    driver.ok("unmount", first)


def test_a_group_change_killed_half_way_is_finished_by_the_next_mount(driver: Driver) -> None:
    """The tree is changed before the root: a mount killed after the walk began leaves the
    root in the old group, so the retry walks again."""
    first = driver.dir("a")
    driver.ok("mount", first, options("v1", **{"kubernetes.io/mounterArgs.FsGroup": "2000"}))
    Path(f"{first}/f").write_text("data")
    driver.ok("unmount", first)
    killing = driver.env()
    driver.env = lambda: {**killing, "FLEXVOL_TEST_HOOKS": "1",  # type: ignore[method-assign]
                          "FLEXVOL_TEST_KILL_AT": "fsgroup-tree"}
    argv = [str(driver.executable), "mount", first,
            options("v1", **{"kubernetes.io/mounterArgs.FsGroup": "3000"})]
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=driver.env(), timeout=120,
                          check=False)
    assert done.returncode == -9, done
    assert os.stat(first).st_gid == 2000  # the walk ran, the root was not changed yet
    driver.env = lambda: killing  # type: ignore[method-assign]
    driver.ok("mount", first, options("v1", **{"kubernetes.io/mounterArgs.FsGroup": "3000"}))
    assert os.stat(first).st_gid == 3000
    assert os.lstat(f"{first}/f").st_gid == 3000
    driver.ok("unmount", first)


def test_mount_options_from_allowlist_are_applied(driver: Driver) -> None:
    target = driver.dir("a")
    driver.ok("mount", target, options("v1", mountOptions="noatime,noexec"))
    mount = next(m for m in driver.mounts() if m.mount_point == target)
    assert "noatime" in mount.options and "noexec" in mount.options
    driver.ok("unmount", target)


def test_secrets_are_decoded_and_never_logged(driver: Driver) -> None:
    import base64

    marker = "s3cr3t-marker-4711"
    encoded = base64.b64encode(marker.encode()).decode()
    target = driver.dir("a")
    driver.ok("mount", target, options("v1", **{"kubernetes.io/secret/password": encoded}))
    driver.ok("unmount", target)
    bad = driver.fail("mount", target, options("v1", **{"kubernetes.io/secret/password": "!!"}))
    assert "base64" in bad.message
    for path in driver.root.rglob("*"):
        if path.is_file() and not path.name.endswith(".img"):
            text = path.read_text(errors="replace")
            assert marker not in text and encoded not in text, path


def test_a_formatted_volume_that_lost_its_filesystem_is_refused_not_reformatted(driver: Driver) -> None:
    target = driver.dir("a")
    driver.ok("mount", target, options("v1"))
    driver.ok("unmount", target)
    backing = driver.backing_file("v1")
    with backing.open("r+b") as handle:  # wipe the ext4 superblock of our own test file
        handle.seek(1024)
        handle.write(b"\0" * 4096)
    before = backing.read_bytes()
    result = driver.fail("mount", target, options("v1"))
    assert "was formatted as ext4" in result.message and "now probes blank" in result.message
    assert backing.read_bytes() == before, "never reformatted"
    assert driver.loops() == [] and driver.mounts() == []


def test_record_remembers_pv_names(driver: Driver) -> None:
    target = driver.dir("a")
    driver.ok("mount", target, options("v1", pv="pv-one"))
    assert driver.record("v1")["pv_names"] == ["pv-one"]
    driver.ok("unmount", target)
