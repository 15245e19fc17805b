"""Bad input that needs a real mount to check: a foreign mount, tolerated extras, bad expand sizes.

The refusals that come before anything touches the kernel (arity, options, mount targets) are
unit tests without root: tests/unit/test_bad_input.py."""

from __future__ import annotations

import json

from tests.helpers.driver import Driver, options


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
