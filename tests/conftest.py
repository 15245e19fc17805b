"""Session-wide guards: every test run ends with no loop device and no mount of ours."""

from __future__ import annotations

import os

import pytest

from tests.helpers.leaks import leaked_loops, leaked_mounts

# Unique per pytest run, so that runs side by side never count each other's devices as leaks.
TEST_PREFIX = f"flexvol-test-{os.getpid()}-"


@pytest.fixture(scope="session", autouse=True)
def nothing_of_ours_left_behind():
    yield
    loops = leaked_loops(TEST_PREFIX)
    mounts = leaked_mounts(TEST_PREFIX)
    assert not loops and not mounts, f"left behind: loops={loops} mounts={mounts}"


ROOT_SUITES = ("integration", "reliability")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if any(part in ROOT_SUITES for part in item.path.parts):
            item.add_marker(pytest.mark.root)
    if os.geteuid() == 0 or os.environ.get("FLEXVOL_SKIP_ROOT_TESTS") != "1":
        return
    # Root tests fail (not skip) without root unless explicitly opted out.
    for item in items:
        if "root" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="FLEXVOL_SKIP_ROOT_TESTS=1 and not root"))
