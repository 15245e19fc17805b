"""Fixtures for the end-to-end suite: a real kubelet (and control plane) driving flexvol.

Run it alone with:  .venv/bin/python -m pytest -m e2e tests/e2e
Without `-m e2e` its tests are skipped, so `pytest tests` stays quick.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TEST_PREFIX
from tests.e2e.harness import Cluster, build, build_image


def _selected(config: pytest.Config) -> bool:
    expression = config.getoption("markexpr") or ""
    return "e2e" in expression and "not e2e" not in expression


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.e2e)
            if not _selected(config):
                item.add_marker(pytest.mark.skip(reason="end-to-end: run with pytest -m e2e tests/e2e"))


@pytest.fixture(scope="session")
def binaries() -> Path:
    if os.geteuid() != 0:
        pytest.fail("the end-to-end suite needs root")
    if os.environ.get("FLEXVOL_E2E_BINARIES"):  # an already built directory, for debugging
        return Path(os.environ["FLEXVOL_E2E_BINARIES"])
    started = time.monotonic()
    path = build()
    print(f"\ne2e binaries ready in {time.monotonic() - started:.0f}s: {path}")
    return path


@pytest.fixture(scope="session")
def flexvol_image() -> Path:
    """The docker-archive of the image deploy/ runs, built offline from Debian packages."""
    started = time.monotonic()
    path = build_image()
    print(f"\nflexvol image ready in {time.monotonic() - started:.0f}s: {path}")
    return path


@pytest.fixture(scope="session")
def install_prefix() -> Iterator[Path]:
    """One install.sh prefix for the session: later installs into it reuse its environment."""
    prefix = Path(tempfile.mkdtemp(prefix=f"{TEST_PREFIX}e2e-opt-", dir="/tmp"))
    yield prefix
    shutil.rmtree(prefix, ignore_errors=True)


def new_cluster(binaries: Path, request: pytest.FixtureRequest) -> Cluster:
    name = re.sub(r"[^a-zA-Z0-9_-]", "-", request.node.name)[:32]
    return Cluster(binaries, f"{TEST_PREFIX}e2e-{name}-")


def finish(cluster: Cluster) -> None:
    started = time.monotonic()
    errors = cluster.stop()
    print(f"\ncluster stopped and removed in {time.monotonic() - started:.0f}s")
    assert not errors, f"cleanup of {cluster.base} failed: {errors}"


def report_logs(cluster: Cluster, request: pytest.FixtureRequest) -> None:
    """On failure, show the tail of each component's log and the driver's journal."""
    failed = any(getattr(item, f"rep_{when}", None) and getattr(item, f"rep_{when}").failed
                 for item in request.session.items if item.module is request.module
                 for when in ("setup", "call"))
    if not failed:
        return
    for log in sorted(cluster.logs.glob("*.log")):
        print(f"\n----- {log.name} (tail)\n{cluster.log_tail(log.stem, 30)}")
    print("\n----- driver calls")
    for call in cluster.calls():
        print(f"{call['verb']} {call['volume']} {call['status']} {call['message']}")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="module")
def node(binaries: Path, install_prefix: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """containerd and a standalone kubelet (static pods only), flexvol installed."""
    cluster = new_cluster(binaries, request)
    try:
        started = time.monotonic()
        cluster.install_driver(install_prefix)
        cluster.start_runtime()
        cluster.start_kubelet()
        print(f"\nnode up in {time.monotonic() - started:.0f}s under {cluster.base}")
        yield cluster
    finally:
        report_logs(cluster, request)
        finish(cluster)


def _control_plane(binaries: Path, prefix: Path | None, request: pytest.FixtureRequest,
                   attach: bool) -> Iterator[Cluster]:
    cluster = new_cluster(binaries, request)
    try:
        started = time.monotonic()
        if prefix:
            cluster.install_driver(prefix, attach=attach)
        cluster.start_runtime()
        cluster.start_control_plane()
        cluster.start_kubelet()
        print(f"\ncluster up in {time.monotonic() - started:.0f}s under {cluster.base}")
        yield cluster
    finally:
        report_logs(cluster, request)
        finish(cluster)


@pytest.fixture(scope="module")
def cluster(binaries: Path, install_prefix: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """etcd, apiserver, controller-manager, scheduler and a kubelet; flexvol without attach."""
    yield from _control_plane(binaries, install_prefix, request, attach=False)


@pytest.fixture(scope="module")
def attach_cluster(binaries: Path, install_prefix: Path,
                   request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """The same with flexvol installed with --attach on the node and the controller-manager."""
    yield from _control_plane(binaries, install_prefix, request, attach=True)


@pytest.fixture(scope="module")
def bare_cluster(binaries: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """The same control plane and kubelet with nothing installed: the plugin dir starts empty,
    for a rollout to fill."""
    yield from _control_plane(binaries, None, request, attach=False)
