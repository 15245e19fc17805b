"""Each integration test gets its own data root and mount dirs, cleaned up even on failure."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.conftest import TEST_PREFIX
from tests.helpers.driver import Driver
from tests.helpers.invariants import violations


def _base_dir(request: pytest.FixtureRequest) -> Path:
    name = re.sub(r"[^a-zA-Z0-9_-]", "-", request.node.name)[:48]
    return Path(tempfile.mkdtemp(prefix=f"{TEST_PREFIX}{name}-", dir="/tmp"))


def _make(request: pytest.FixtureRequest, attach: bool) -> Driver:
    base = _base_dir(request)
    driver = Driver(base, attach=attach)
    (base / "mnt").mkdir()

    def finish() -> None:
        broken = violations(base, driver.root)
        errors = driver.cleanup()
        if not errors and not driver.mounts():
            shutil.rmtree(base, ignore_errors=True)
        assert not errors, f"cleanup of {base} failed: {errors}"
        assert not broken, f"invariants broken at the end of the test: {broken}"

    request.addfinalizer(finish)
    return driver


@pytest.fixture
def driver(request: pytest.FixtureRequest) -> Driver:
    return _make(request, attach=False)


@pytest.fixture
def attach_driver(request: pytest.FixtureRequest) -> Driver:
    return _make(request, attach=True)


@pytest.fixture(autouse=True)
def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("integration tests need root (real loop devices and mounts)")
