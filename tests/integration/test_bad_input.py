"""Bad input of every kind gets a Failure with an actionable message and touches nothing."""

from __future__ import annotations

import json

import pytest

from tests.helpers.driver import Driver, options


def assert_untouched(driver: Driver) -> None:
    assert driver.loops() == [] and driver.mounts() == []
    volumes = driver.root / "volumes"
    assert not volumes.exists() or list(volumes.iterdir()) == []


@pytest.mark.parametrize(("args", "fragment"), [
    (["mount"], "takes 2 argument"),
    (["mount", "/tmp/x"], "takes 2 argument"),
    (["mount", "", ""], "empty"),
    (["unmount"], "takes 1 argument"),
    (["attach", "{}"], "takes 2 argument"),
    (["expandfs", "{}", "", "", ""], "takes 5 argument"),
])
def test_wrong_arity_and_empty_arguments(driver: Driver, args: list[str], fragment: str) -> None:
    assert fragment in driver.fail(*args).message
    assert_untouched(driver)


@pytest.mark.parametrize(("raw", "fragment"), [
    ("{", "not valid JSON"),
    ("[]", "JSON object"),
    ('{"volumeID": null}', "volumeID"),
    ('{"volumeID": 7}', "volumeID"),
    ('{"volumeID": "../../etc"}', "volumeID"),
    ('{"volumeID": "a/b"}', "volumeID"),
    ('{"volumeID": ""}', "missing"),
    ('{"size": "1Gi"}', "missing"),
    ('{"volumeID": "v1", "size": "-1"}', "size"),
    ('{"volumeID": "v1", "size": "0"}', "size"),
    ('{"volumeID": "v1", "size": "1e400"}', "size"),
    ('{"volumeID": "v1", "size": "10Zi"}', "size"),
    ('{"volumeID": "v1", "size": " 1Gi"}', "size"),
    ('{"volumeID": "v1", "size": "1000Ei"}', "size"),
    ('{"volumeID": "v1", "kubernetes.io/fsType": "ntfs"}', "fsType"),
    ('{"volumeID": "v1", "kubernetes.io/fsType": "ext4;rm -rf /"}', "fsType"),
    ('{"volumeID": "v1", "kubernetes.io/fsType": "xfs", "size": "64Mi"}', "xfs needs"),
    ('{"volumeID": "v1", "kubernetes.io/readwrite": "rwx"}', "readwrite"),
    ('{"volumeID": "v1", "mountOptions": "suid"}', "not allowed"),
    ('{"volumeID": "v1", "mountOptions": "defaults,exec"}', "not allowed"),
])
def test_bad_options_leave_nothing_behind(driver: Driver, raw: str, fragment: str) -> None:
    result = driver.fail("mount", driver.dir("a"), raw)
    assert fragment in result.message
    assert "Traceback" not in result.output
    assert_untouched(driver)


def test_size_larger_than_the_pool_is_refused(driver: Driver) -> None:
    result = driver.fail("mount", driver.dir("a"), options("v1", size="1Ei"))
    assert "larger than the whole pool" in result.message
    assert_untouched(driver)


@pytest.mark.parametrize("target", ["relative/dir", "/", "/.", "//"])
def test_dangerous_mount_targets(driver: Driver, target: str) -> None:
    driver.fail("mount", target, options("v1"))
    assert_untouched(driver)


def test_targets_in_or_above_the_data_root_are_refused(driver: Driver) -> None:
    driver.ok("init")
    inside = str(driver.root / "volumes" / "x")
    assert "data root" in driver.fail("mount", inside, options("v1")).message
    assert "data root" in driver.fail("mount", str(driver.root), options("v1")).message
    assert "data root" in driver.fail("mount", str(driver.base), options("v1")).message
    link = driver.base / "mnt" / "link"
    driver.root.mkdir(parents=True, exist_ok=True)
    link.symlink_to(driver.root)
    # Through a symlink: refused before anything is resolved (mountdir.py).
    assert "symlink" in driver.fail("mount", str(link / "sub"), options("v1")).message
    assert "refusing to use '/'" in driver.fail("unmount", "/").message
    assert_untouched(driver)


def test_unmount_of_a_foreign_mount_is_refused(driver: Driver) -> None:
    import subprocess

    target = driver.dir("tmpfs")
    import os

    os.makedirs(target)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", target], check=True)
    try:
        result = driver.fail("unmount", target)
        assert "not a flexvol volume" in result.message
        assert any(m.mount_point == target for m in driver.mounts())
    finally:
        subprocess.run(["umount", target], check=True)


def test_unknown_keys_and_extra_whitespace_are_tolerated(driver: Driver) -> None:
    raw = "  " + json.dumps({"volumeID": "v1", "size": "16Mi", "unknown.io/key": "x"}) + "\n"
    target = driver.dir("a")
    driver.ok("mount", target, raw)
    driver.ok("unmount", target)


def test_expand_with_bad_sizes(driver: Driver) -> None:
    target = driver.dir("a")
    driver.ok("mount", target, options("v1"))
    assert "new size" in driver.fail("expandfs", options("v1"), "", target, "abc", "0").message
    assert "new size" in driver.fail("expandfs", options("v1"), "", target, "-5", "0").message
    assert "new size" in driver.fail("expandvolume", options("v1"), "x", "", "0").message
    driver.ok("unmount", target)
