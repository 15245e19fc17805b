"""Fixtures of the reliability suite and the report it writes (results/reliability-report.*).

Every scenario runs in its own data roots under /tmp/flexvol-test-<pid>-..., cleaned up (mounts,
loop devices, write guards, files) even when the test fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import TEST_PREFIX
from tests.helpers.driver import REPO, lift_write_guards
from tests.helpers.invariants import violations
from tests.reliability.harness import FIGURES, FULL, Harness

RESULTS = REPO / "results"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "reliability" in item.path.parts:
            item.add_marker(pytest.mark.reliability)


@pytest.fixture(autouse=True)
def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("reliability tests need root (real loop devices and mounts)")


@pytest.fixture
def base(request: pytest.FixtureRequest) -> Path:
    name = re.sub(r"[^a-zA-Z0-9_-]", "-", request.node.name)[:40]
    path = Path(tempfile.mkdtemp(prefix=f"{TEST_PREFIX}{name}-", dir="/tmp"))
    yield path
    lift_write_guards(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def make_harness(base: Path) -> Callable[..., Harness]:
    """A factory: each call gives a fresh data root and mount dir under the test's dir."""
    made: list[Harness] = []

    def make(name: str = "h", attach: bool = False) -> Harness:
        path = base / f"{name}-{len(made)}"
        path.mkdir()
        (path / "mnt").mkdir()
        harness = Harness(path, attach=attach)
        made.append(harness)
        return harness

    make.made = made  # type: ignore[attr-defined]
    yield make
    broken = [item for harness in made for item in violations(harness.base, harness.root)]
    errors = []
    for harness in reversed(made):
        errors.extend(harness.cleanup())
    assert not errors, f"cleanup failed: {errors}"
    assert not broken, f"invariants broken at the end of the scenario: {broken}"


@pytest.fixture
def harness(make_harness: Callable[..., Harness]) -> Harness:
    return make_harness("h")


@pytest.fixture
def attach_harness(make_harness: Callable[..., Harness]) -> Harness:
    return make_harness("a", attach=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not FIGURES.values:
        return
    RESULTS.mkdir(exist_ok=True)
    body = {
        "mode": "full" if FULL else "quick sample",
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "pytest_exit_status": int(exitstatus),
        "figures": FIGURES.values,
    }
    (RESULTS / "reliability-report.json").write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
    lines = [
        "# flexvol reliability report",
        "",
        f"Mode: {body['mode']}; finished {body['finished']}; pytest exit status {exitstatus}.",
        "Written by `make reliability` (all of it) or `./test.sh` (the quick sample).",
        "",
    ]
    for scenario in sorted(FIGURES.values):
        lines += [f"## {scenario}", "", "| figure | value |", "|---|---|"]
        for key, value in sorted(FIGURES.values[scenario].items()):
            lines.append(f"| {key} | {value} |")
        lines.append("")
    (RESULTS / "reliability-report.md").write_text("\n".join(lines))
